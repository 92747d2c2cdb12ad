#!/usr/bin/env python3
"""Writes the knowledge base's catalogue, past messages and eval set (deterministic).

Run from the repository root: `python3 knowledge-base/tools/generate.py`. The brand guidelines
and ingestion.json are written by hand and not touched. Output is committed; rerunning with the
same inputs gives identical files.
"""

import json
import random
from pathlib import Path

from catalogue import SERVICES, REGIONS
from situations import SITUATIONS

ROOT = Path(__file__).resolve().parent.parent
BY_ID = {s["id"]: s for s in SERVICES}
FIRST = ["Dana", "Marcus", "Priya", "Tom", "Elena", "Jamal", "Grace", "Luis", "Hannah", "Kenji", "Olivia",
         "Sam", "Fatima", "Noah", "Mei", "Carlos", "Ruth", "Devon", "Aisha", "Pete", "Ingrid", "Raj", "Beth",
         "Omar", "Claire", "Victor", "Leah", "Andre", "Sofia", "Walt"]
CHANNELS = ["email", "sms"]
SIGNERS = ["Jordan from the Greenway team", "Alex, your Greenway account manager", "The Greenway crew",
           "Morgan at Greenway Home Services"]
OPENERS = ["Hi {name},", "Hello {name},", "Hi {name} -", "Good morning {name},"]
THANKS = ["Thanks for {years} with us.", "It has been {years} since our first visit - thank you.",
          "We've enjoyed looking after your home for {years}.", "Thank you for trusting us for {years}."]
CTAS = ["Reply YES and we'll pencil you in for {when}.", "Tap the link to pick a day in {when}.",
        "Just reply to this message and we'll book a slot in {when}.", "Want it? Reply and we'll confirm a date in {when}."]
WHEN = {"spring": "April", "summer": "June", "autumn": "October", "winter": "December"}


def dollars(cents):
    return f"${cents / 100:,.0f}" if cents % 100 == 0 else f"${cents / 100:,.2f}"


def years_text(days):
    y = days // 365
    return "a year" if y <= 1 else f"{y} years"


def current_services(rng, offered):
    pool = [s["id"] for s in SERVICES if s["id"] != offered]
    return sorted(rng.sample(pool, rng.randint(1, 3)))


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def catalogue():
    out = ROOT / "catalogue"
    out.mkdir(exist_ok=True)
    for s in SERVICES:
        needs = s["needs"]
        suits = []
        if needs.get("pool"):
            suits.append("homes with a pool")
        if needs.get("pets"):
            suits.append("households with dogs")
        if "min_lot_acres" in needs:
            suits.append(f"lots of at least {needs['min_lot_acres']} acres")
        if "max_home_age" in needs:
            suits.append(f"homes up to {needs['max_home_age']} years old (older decks need an inspection first)")
        text = (
            f"# {s['name']}\n\n"
            f"Offering id: {s['id']} (sold as service {s['service']})\n\n"
            f"Price: {dollars(s['price'])} {s['unit']}.\n\n"
            f"Seasons: {', '.join(s['seasons'])}.\n\n"
            f"Offered in: {', '.join(s['regions'])}.\n\n"
            f"Suits: {'; '.join(suits) if suits else 'any home'}.\n\n"
            f"{s['desc']}\n"
        )
        (out / f"{s['id']}.md").write_text(text)
        meta = {
            "doc_type": "catalogue",
            "service": s["service"],
            "offering": s["id"],
            "price_cents": s["price"],
            "seasons": s["seasons"],
            "regions": s["regions"],
            "requires_pool": bool(needs.get("pool")),
            "requires_pets": bool(needs.get("pets")),
        }
        write_json(out / f"{s['id']}.md.metadata.json", {"metadataAttributes": meta})


def past_messages():
    rng = random.Random(20240601)
    out = ROOT / "past-messages"
    out.mkdir(exist_ok=True)
    queries = []
    n = 0
    for sid, service_id, detail, hook, query in SITUATIONS:
        svc = BY_ID[service_id]
        regions = [r for r in svc["regions"] if r in REGIONS] or REGIONS
        ids = []
        for _ in range(3):
            n += 1
            doc_id = f"pm-{n:04d}"
            ids.append(f"past-messages/{doc_id}")
            name = rng.choice(FIRST)
            region = rng.choice(regions)
            season = rng.choice(svc["seasons"])
            tenure_days = rng.randint(200, 3650)
            ltv = rng.randint(30, 900) * 1000 + rng.randint(0, 99) * 10
            lot = round(rng.uniform(0.12, 2.2), 2)
            has_pool = bool(svc["needs"].get("pool")) or rng.random() < 0.2
            has_pets = bool(svc["needs"].get("pets")) or "dog" in detail or rng.random() < 0.3
            home_age = rng.randint(2, 70)
            sat = round(rng.uniform(3.8, 5.0), 1)
            trend = rng.choice(["rising", "steady", "steady", "dipping slightly"])
            current = current_services(rng, service_id)
            channel = rng.choice(CHANNELS)
            year = rng.choice([2023, 2024, 2025])
            price = svc["price"]
            discount = rng.choice([0, 0, 10, 15])
            offer = (f"{discount}% off the first {svc['unit'].replace('per ', '')}"
                     if discount else f"{dollars(price)} {svc['unit']}")
            body = " ".join([
                rng.choice(OPENERS).format(name=name),
                rng.choice(THANKS).format(years=years_text(tenure_days)),
                f"{hook[0].upper() + hook[1:]}.",
                f"Our {svc['name'].lower()}: {svc['desc'].split('. ')[0].rstrip('.')}.",
                f"For you: {offer}.",
                rng.choice(CTAS).format(when=WHEN[season]),
                f"- {rng.choice(SIGNERS)}. Reply STOP to opt out.",
            ])
            context = (
                f"Customer for {years_text(tenure_days)} in the {region} region; currently buys "
                f"{', '.join(current)}; lifetime value {dollars(ltv)}. Property: {lot} acre lot, "
                f"{'pool' if has_pool else 'no pool'}, {'pets' if has_pets else 'no pets'}, home built "
                f"{2025 - home_age}. Satisfaction {sat}/5 over recent surveys ({trend}). "
                f"Account notes: {detail}."
            )
            text = (
                f"# Past successful upsell: {svc['name']} ({region}, {season} {year})\n\n"
                f"## Customer context\n{context}\n\n"
                f"## Offer\n{svc['name']} (service {svc['service']}, offering {service_id}), {offer}, sent by {channel}.\n\n"
                f"## Message\n{body}\n\n"
                f"## Outcome\nAccepted within {rng.randint(1, 9)} days; the customer booked the service.\n"
            )
            (out / f"{doc_id}.md").write_text(text)
            meta = {
                "doc_type": "past_message",
                "service": svc["service"],
                "offering": service_id,
                "region": region,
                "season": season,
                "channel": channel,
                "year": year,
                "has_pool": has_pool,
                "has_pets": has_pets,
                "outcome": "accepted",
            }
            write_json(out / f"{doc_id}.md.metadata.json", {"metadataAttributes": meta})
        q = {"id": f"q-{sid}", "query": query, "relevant": ids}
        if len(queries) % 3 == 0:
            q["filter"] = {"doc_type": "past_message"}
        queries.append(q)
    eval_dir = ROOT / "eval"
    eval_dir.mkdir(exist_ok=True)
    with open(eval_dir / "queries.jsonl", "w") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    return n, len(queries)


if __name__ == "__main__":
    catalogue()
    docs, queries = past_messages()
    print(f"{len(SERVICES)} catalogue entries, {docs} past messages, {queries} eval queries")
