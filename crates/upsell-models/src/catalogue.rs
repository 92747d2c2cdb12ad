//! The service catalogue: every offering the company sells, with its catalogue name, price,
//! seasons, regions and property requirements. Read from the knowledge base
//! (`knowledge-base/catalogue/*.md` and their `.metadata.json` sidecars), embedded at build time
//! so that Lambda binaries and the local runtime carry the same catalogue.

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use upsell_core::events::{Region, Service};
use upsell_core::features::Season;

/// One offering of the catalogue, e.g. `lawn_mowing` (sold as service `lawn-care`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Offering {
    /// Offering id, e.g. `lawn_mowing`.
    pub offering: String,
    /// The service family it belongs to.
    pub service: Service,
    /// Catalogue name as customers see it, e.g. `Lawn mowing`.
    pub name: String,
    /// Catalogue price in US cents.
    pub price_cents: u64,
    /// What the price buys, e.g. `per visit`.
    pub price_unit: String,
    /// Seasons in which it is sold.
    pub seasons: Vec<Season>,
    /// Regions where it is offered.
    pub regions: Vec<Region>,
    /// Only for homes with a pool.
    pub requires_pool: bool,
    /// Only for households with pets.
    pub requires_pets: bool,
    /// What the service is, in one paragraph.
    pub description: String,
}

impl Offering {
    /// The price as customers read it: `$45` or `$45.50`.
    pub fn price_text(&self) -> String {
        format_price(self.price_cents)
    }
}

/// Formats cents as dollars: whole dollars without decimals, otherwise two decimals.
pub fn format_price(cents: u64) -> String {
    if cents.is_multiple_of(100) {
        format!("${}", cents / 100)
    } else {
        format!("${}.{:02}", cents / 100, cents % 100)
    }
}

/// The whole catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    offerings: Vec<Offering>,
    /// `offerings[i].name` in lower case, for [`Catalogue::mentioned_in`].
    lower_names: Vec<String>,
}

/// A catalogue entry that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("catalogue entry {file}: {message}")]
pub struct CatalogueError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

const FILES: &[(&str, &str, &str)] = include!(concat!(env!("OUT_DIR"), "/catalogue_files.rs"));

#[derive(Deserialize)]
struct Sidecar {
    #[serde(rename = "metadataAttributes")]
    attrs: SidecarAttrs,
}

#[derive(Deserialize)]
struct SidecarAttrs {
    service: Service,
    offering: String,
    price_cents: u64,
    seasons: Vec<Season>,
    regions: Vec<Region>,
    #[serde(default)]
    requires_pool: bool,
    #[serde(default)]
    requires_pets: bool,
}

impl Catalogue {
    /// The catalogue embedded from `knowledge-base/catalogue/` at build time.
    pub fn builtin() -> &'static Catalogue {
        static C: OnceLock<Catalogue> = OnceLock::new();
        C.get_or_init(|| {
            Catalogue::from_files(FILES.iter().copied())
                .expect("the embedded catalogue is checked by this crate's tests")
        })
    }

    /// Builds a catalogue from `(file name, markdown, sidecar JSON)` triples.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Catalogue, CatalogueError> {
        let mut offerings = Vec::new();
        for (file, md, meta) in files {
            let err = |message: String| CatalogueError {
                file: file.to_owned(),
                message,
            };
            let side: Sidecar =
                serde_json::from_str(meta).map_err(|e| err(format!("bad sidecar: {e}")))?;
            let name = md
                .lines()
                .find_map(|l| l.strip_prefix("# "))
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err("no `# Name` heading".into()))?
                .to_owned();
            let description = md
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty() && !p.starts_with('#') && !p.contains(": "))
                .last()
                .unwrap_or_default()
                .replace('\n', " ");
            let price_unit = md
                .lines()
                .find_map(|l| l.strip_prefix("Price: "))
                .and_then(|p| p.split_once(' ').map(|(_, unit)| unit))
                .map(|u| u.trim().trim_end_matches('.').to_owned())
                .unwrap_or_default();
            let a = side.attrs;
            offerings.push(Offering {
                offering: a.offering,
                service: a.service,
                name,
                price_cents: a.price_cents,
                price_unit,
                seasons: a.seasons,
                regions: a.regions,
                requires_pool: a.requires_pool,
                requires_pets: a.requires_pets,
                description,
            });
        }
        offerings.sort_by(|a, b| a.offering.cmp(&b.offering));
        let lower_names = offerings.iter().map(|o| o.name.to_lowercase()).collect();
        Ok(Catalogue {
            offerings,
            lower_names,
        })
    }

    /// Every offering, sorted by offering id.
    pub fn offerings(&self) -> &[Offering] {
        &self.offerings
    }

    /// One offering by id.
    pub fn get(&self, offering: &str) -> Option<&Offering> {
        self.offerings.iter().find(|o| o.offering == offering)
    }

    /// Offerings whose catalogue name appears in `text` (case-insensitive, whole words).
    pub fn mentioned_in(&self, text: &str) -> Vec<&Offering> {
        self.mentioned_in_lower(&text.to_lowercase())
    }

    /// [`Catalogue::mentioned_in`] for text already in lower case.
    pub(crate) fn mentioned_in_lower(&self, lower: &str) -> Vec<&Offering> {
        self.offerings
            .iter()
            .zip(&self.lower_names)
            .filter(|(_, name)| contains_words(lower, name))
            .map(|(o, _)| o)
            .collect()
    }
}

/// Whether `needle` occurs in `haystack` bounded by non-alphanumeric characters.
pub(crate) fn contains_words(haystack: &str, needle: &str) -> bool {
    let bounded = |i: usize| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    };
    if needle.is_empty() {
        return haystack.match_indices(needle).any(|(i, _)| bounded(i));
    }
    // The same non-overlapping occurrences, left to right, as `match_indices`, found with a
    // vectorised search (a non-empty UTF-8 needle only matches at character boundaries).
    memchr::memmem::find_iter(haystack.as_bytes(), needle.as_bytes()).any(bounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_search_agrees_with_a_plain_scan() {
        let plain = |h: &str, n: &str| {
            h.match_indices(n).any(|(i, m)| {
                let before = h[..i].chars().next_back();
                let after = h[i + m.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            })
        };
        let hays = [
            "",
            "aaa",
            "a aa aaa",
            "xab ab ab",
            "über lawn mowing!",
            "lawn mowingx lawn mowing",
            "éé é",
            "señor-jardín",
        ];
        let needles = ["", "a", "aa", "ab ab", "lawn mowing", "é", "jardín", "x"];
        for h in hays {
            for n in needles {
                assert_eq!(contains_words(h, n), plain(h, n), "{h:?} / {n:?}");
            }
        }
    }

    #[test]
    fn builtin_catalogue_reads_every_knowledge_base_entry() {
        let c = Catalogue::builtin();
        assert_eq!(c.offerings().len(), FILES.len());
        assert!(c.offerings().len() >= 20);
        let mow = c.get("lawn_mowing").unwrap();
        assert_eq!(mow.name, "Lawn mowing");
        assert_eq!(mow.service, Service::LawnCare);
        assert_eq!(mow.price_text(), "$45");
        assert_eq!(mow.price_unit, "per visit");
        assert!(mow.description.contains("edging"), "{}", mow.description);
        assert!(c.get("pool_opening").unwrap().requires_pool);
        assert!(c.get("pet_waste_removal").unwrap().requires_pets);
    }

    #[test]
    fn names_are_matched_as_whole_words() {
        let c = Catalogue::builtin();
        let hits: Vec<_> = c
            .mentioned_in("Our Gutter cleaning visit is $149.")
            .iter()
            .map(|o| o.offering.as_str())
            .collect();
        assert_eq!(hits, ["gutter_cleaning"]);
        assert!(!contains_words("lawn mowings", "lawn mowing"));
        assert!(contains_words("ab ab", "ab ab"));
        assert!(!contains_words("", "a"));
        assert_eq!(format_price(4550), "$45.50");
    }
}
