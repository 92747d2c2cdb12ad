"""The service catalogue: one entry per offering, used by generate.py.

Fields: id (offering), service (the `upsell_core::events::Service` code it is sold as), name, price in cents, unit, seasons, regions where offered, property needs
(pool / pets / min lot acres / max home age), and a description written for sales staff.
"""

SERVICES = [
    dict(id="lawn_mowing", service="lawn-care", name="Lawn mowing", price=4500, unit="per visit", seasons=["spring", "summer", "autumn"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={"min_lot_acres": 0.1},
         desc="Weekly or biweekly mowing, edging along walks and beds, and clippings blown off hard surfaces. "
              "Crews keep the same day each week. Suits any home with a lawn; larger lots get a ride-on mower."),
    dict(id="fertilization", service="lawn-care", name="Lawn fertilization programme", price=6900, unit="per application", seasons=["spring", "summer", "autumn"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={"min_lot_acres": 0.1},
         desc="Five slow-release feedings a year matched to the grass type and a soil test. Pet-safe granules: "
              "animals can return to the lawn once it is dry. Thickens thin turf and crowds out weeds."),
    dict(id="aeration_overseeding", service="lawn-care", name="Core aeration and overseeding", price=17900, unit="per lawn", seasons=["autumn", "spring"],
         regions=["northeast", "midwest", "northwest", "southeast"], needs={"min_lot_acres": 0.15},
         desc="Pulls soil plugs to relieve compaction and spreads new seed into the holes. Best for lawns that "
              "see heavy play, dogs running, or parked cars, and for patchy turf after a hot summer."),
    dict(id="weed_control", service="lawn-care", name="Weed control", price=5900, unit="per treatment", seasons=["spring", "summer"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="Pre-emergent in early spring and spot treatment of dandelion, clover and crabgrass through summer. "
              "Beds and gravel paths included on request."),
    dict(id="pool_cleaning", service="pool-service", name="Weekly pool cleaning", price=13900, unit="per month", seasons=["spring", "summer", "autumn"],
         regions=["southeast", "southwest", "west", "northeast", "midwest"], needs={"pool": True},
         desc="Skimming, brushing, vacuuming, filter checks and water chemistry balanced every week, with a "
              "photo report after each visit. Owners stop handling chlorine and test strips."),
    dict(id="pool_opening", service="pool-service", name="Pool opening", price=24900, unit="per pool", seasons=["spring"],
         regions=["northeast", "midwest", "northwest", "southeast"], needs={"pool": True},
         desc="Cover removal and cleaning, refilling, restarting the pump and heater, and a shock treatment so "
              "the water is swimmable within days rather than weeks."),
    dict(id="pool_closing", service="pool-service", name="Pool closing and winterization", price=22900, unit="per pool", seasons=["autumn"],
         regions=["northeast", "midwest", "northwest"], needs={"pool": True},
         desc="Lowering the water, blowing out lines, adding antifreeze and fitting the safety cover before the "
              "first frost, which avoids cracked plumbing over winter."),
    dict(id="gutter_cleaning", service="gutter-cleaning", name="Gutter cleaning", price=14900, unit="per visit", seasons=["autumn", "spring"],
         regions=["northeast", "southeast", "midwest", "northwest"], needs={},
         desc="Hand-clearing gutters and flushing downspouts, with a check of hangers and seams. Homes near "
              "large trees usually need it twice a year; clogged gutters lead to fascia rot and basement leaks."),
    dict(id="pest_control", service="pest-control", name="Quarterly pest control", price=11900, unit="per quarter", seasons=["spring", "summer", "autumn", "winter"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="Exterior barrier treatment against ants, spiders, roaches and rodents, plus interior visits on "
              "request between scheduled services at no charge. Products are safe around children and pets once dry."),
    dict(id="mosquito_control", service="pest-control", name="Mosquito and tick control", price=8900, unit="per treatment", seasons=["spring", "summer"],
         regions=["northeast", "southeast", "midwest"], needs={"min_lot_acres": 0.1},
         desc="Treatment of shrubs, shady resting spots and standing water every three weeks during the biting "
              "season. Reduces ticks along wooded edges, which matters for dogs and children playing outside."),
    dict(id="pet_waste_removal", service="lawn-care", name="Pet waste removal", price=2500, unit="per weekly visit", seasons=["spring", "summer", "autumn", "winter"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={"pets": True},
         desc="A weekly yard sweep that bags and removes dog waste and deodorises the run. Keeps the lawn usable "
              "and our mowing crews' visits on schedule."),
    dict(id="tree_trimming", service="tree-trimming", name="Tree and shrub trimming", price=29900, unit="per visit", seasons=["winter", "autumn", "spring"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={"min_lot_acres": 0.2},
         desc="Certified arborists thin canopies, lift limbs off the roof and shape hedges. Dormant-season pruning "
              "is gentlest on the tree and clears branches before storms."),
    dict(id="leaf_removal", service="lawn-care", name="Leaf removal", price=18900, unit="per visit", seasons=["autumn"],
         regions=["northeast", "midwest", "northwest", "southeast"], needs={"min_lot_acres": 0.1},
         desc="Leaves blown from lawn and beds, mulched or hauled away, so the grass does not smother under a wet "
              "mat over winter."),
    dict(id="snow_removal", service="snow-removal", name="Snow removal", price=5500, unit="per storm", seasons=["winter"],
         regions=["northeast", "midwest", "northwest"], needs={},
         desc="Driveway plowing and hand-shovelled walks and steps after every snowfall over two inches, salted on "
              "request, before 7 a.m. on weekdays."),
    dict(id="irrigation_winterization", service="irrigation-service", name="Sprinkler winterization", price=9900, unit="per system", seasons=["autumn"],
         regions=["northeast", "midwest", "northwest"], needs={"min_lot_acres": 0.1},
         desc="Compressed-air blowout of every sprinkler zone before the ground freezes, with a spring start-up and "
              "head check included for returning customers."),
    dict(id="irrigation_tune_up", service="irrigation-service", name="Irrigation tune-up", price=11900, unit="per system", seasons=["spring", "summer"],
         regions=["southwest", "southeast", "west", "northwest"], needs={"min_lot_acres": 0.1},
         desc="Fixing broken heads and leaks, re-aiming sprays off the pavement and setting a smart schedule that "
              "follows local watering rules. Typically cuts outdoor water use by a fifth."),
    dict(id="window_washing", service="window-cleaning", name="Window washing", price=19900, unit="per home", seasons=["spring", "autumn"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="Inside and outside glass, screens and tracks, with pure-water poles for second-storey windows."),
    dict(id="pressure_washing", service="pressure-washing", name="Pressure washing", price=21900, unit="per job", seasons=["spring", "summer"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="Driveways, patios, pool decks and siding cleaned of mildew, algae and oil stains with soft-wash for "
              "painted surfaces."),
    dict(id="deck_staining", service="pressure-washing", name="Deck cleaning and staining", price=64900, unit="per deck", seasons=["spring", "summer"],
         regions=["northeast", "midwest", "northwest", "southeast"], needs={"max_home_age": 80},
         desc="Washing, sanding rough boards and two coats of penetrating stain that protects against sun and rain "
              "for two to three years."),
    dict(id="hvac_tune_up", service="hvac-tune-up", name="Heating and cooling tune-up", price=12900, unit="per system", seasons=["spring", "autumn"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="A licensed technician cleans coils, checks refrigerant and burners, replaces the filter and tests "
              "carbon monoxide safety. Older systems gain the most."),
    dict(id="duct_cleaning", service="duct-cleaning", name="Air duct cleaning", price=39900, unit="per home", seasons=["winter", "autumn", "spring"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="Negative-pressure cleaning of supply and return ducts, registers and the blower, with before and after "
              "camera photos. Removes construction dust, pet hair and the debris that recirculates every time the system runs."),
    dict(id="carpet_cleaning", service="carpet-cleaning", name="Carpet and upholstery cleaning", price=17900, unit="per three rooms", seasons=["winter", "spring", "autumn"],
         regions=["northeast", "southeast", "midwest", "southwest", "west", "northwest"], needs={},
         desc="Hot-water extraction with enzyme pre-treatment for pet spots and odours, dry to walk on in a few hours. "
              "Sofas and chairs can be added per piece."),
]

REGIONS = ["northeast", "southeast", "midwest", "southwest", "west", "northwest"]
SEASONS = ["spring", "summer", "autumn", "winter"]
