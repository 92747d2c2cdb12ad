//! Embeds the service catalogue (knowledge-base/catalogue/*.md and their metadata sidecars) so
//! that every binary carries the same catalogue as the knowledge base, in Lambda too.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let kb = manifest.join("../../knowledge-base");
    let dir = kb.join("catalogue");
    println!("cargo::rerun-if-changed={}", dir.display());
    println!(
        "cargo::rerun-if-changed={}",
        kb.join("brand-rules.json").display()
    );
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the catalogue folder {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    entries.sort();
    let mut out = String::from("&[\n");
    for md in entries {
        let meta = PathBuf::from(format!("{}.metadata.json", md.display()));
        assert!(
            meta.exists(),
            "catalogue entry {} has no metadata sidecar",
            md.display()
        );
        println!("cargo::rerun-if-changed={}", md.display());
        println!("cargo::rerun-if-changed={}", meta.display());
        writeln!(
            out,
            "    ({:?}, include_str!({:?}), include_str!({:?})),",
            md.file_name().unwrap().to_string_lossy(),
            md.canonicalize().unwrap(),
            meta.canonicalize().unwrap()
        )
        .unwrap();
    }
    out.push_str("]\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("catalogue_files.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
