//! Tidy: the invariants ARCHITECTURE.md writes down, checked over `cargo metadata`, `cargo tree`
//! and the sources, so a change that breaks one fails `cargo test`.
//!
//! - upsell-core depends on no I/O crate and its library code touches no file, network,
//!   process, environment or clock.
//! - Only upsell-aws depends on the AWS SDK directly, and the local path (the default members
//!   with their default features) never compiles it.
//! - Lambda binaries (each worker with its `lambda` feature) do not link the local HTTP client
//!   or SQLite.
//! - Every path ARCHITECTURE.md names exists.
//! - FNV-1a is written once, in `upsell_core::hash`.
//! - upsell-jsonata, upsell-asl, upsell-sqlite and upsell-local declare no `pub mod` in their
//!   `lib.rs`: the crate root is their API.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `cargo metadata` of the workspace resolved with default features (the local path).
struct Metadata {
    /// Package id -> name.
    names: HashMap<String, String>,
    /// Package id -> ids of its normal (non-dev, non-build) dependencies.
    normal: HashMap<String, Vec<String>>,
    /// Workspace package name -> id.
    members: HashMap<String, String>,
    /// Ids of the default members.
    defaults: Vec<String>,
    json: Value,
}

fn metadata() -> Metadata {
    let json: Value =
        serde_json::from_str(&cargo(&["metadata", "--format-version", "1", "--locked"])).unwrap();
    let names: HashMap<String, String> = json["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut normal = HashMap::new();
    for node in json["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap().to_owned())
            .collect();
        normal.insert(node["id"].as_str().unwrap().to_owned(), deps);
    }
    let ids = |key: &str| -> Vec<String> {
        json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let members = ids("workspace_members")
        .into_iter()
        .map(|id| (names[&id].clone(), id))
        .collect();
    let defaults = ids("workspace_default_members");
    Metadata {
        names,
        normal,
        members,
        defaults,
        json,
    }
}

impl Metadata {
    /// Names of every package in the normal-dependency closure of `from`.
    fn closure(&self, from: &[String]) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = from.iter().collect();
        let mut out = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            out.insert(self.names[id].clone());
            stack.extend(self.normal.get(id).into_iter().flatten());
        }
        out
    }
}

fn is_aws_sdk(name: &str) -> bool {
    name.starts_with("aws-sdk-") || name == "aws-config" || name.starts_with("aws-smithy-")
}

#[test]
fn upsell_core_depends_on_no_io_crate() {
    let m = metadata();
    let core = m.members["upsell-core"].clone();
    let io = |n: &str| {
        is_aws_sdk(n)
            || [
                "tokio",
                "mio",
                "rusqlite",
                "libsqlite3-sys",
                "ureq",
                "hyper",
                "reqwest",
                "lambda_runtime",
                "zstd",
                "tempfile",
            ]
            .contains(&n)
    };
    let bad: Vec<String> = m.closure(&[core]).into_iter().filter(|n| io(n)).collect();
    assert!(bad.is_empty(), "upsell-core depends on I/O crates: {bad:?}");
}

/// Library code of upsell-core (test modules excluded) reads no files, environment, network
/// or processes: adapters and binaries do that and hand core the values.
#[test]
fn upsell_core_sources_do_no_io() {
    let forbidden = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "File::open",
        "File::create",
        "Utc::now",
        "Local::now",
        "Instant::now",
        "SystemTime",
    ];
    let mut found = Vec::new();
    let dir = root().join("crates/upsell-core/src");
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Everything from the first `#[cfg(test)]` on is test code.
            let lib = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, line) in lib.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for f in forbidden {
                    if code.contains(f) {
                        found.push(format!("{}:{}: {f}", p.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O in upsell-core:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_upsell_aws_depends_on_the_aws_sdk_and_the_local_path_never_compiles_it() {
    let m = metadata();
    for p in m.json["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if !m.members.contains_key(name) || name == "upsell-aws" {
            continue;
        }
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            assert!(
                !is_aws_sdk(dep) || !d["kind"].is_null(),
                "{name} depends on {dep} directly; AWS SDK calls belong in crates/upsell-aws"
            );
        }
    }
    let local = m.closure(&m.defaults);
    let sdk: Vec<&String> = local.iter().filter(|n| is_aws_sdk(n)).collect();
    assert!(
        sdk.is_empty(),
        "the default members (`cargo build`) compile the AWS SDK: {sdk:?}"
    );
    assert!(local.contains("upsell-cli") && local.contains("upsell-core"));
}

#[test]
fn lambda_binaries_link_neither_the_local_http_client_nor_sqlite() {
    let m = metadata();
    let mut checked = 0;
    for p in m.json["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if !m.members.contains_key(name) || p["features"].get("lambda").is_none() {
            continue;
        }
        let tree = cargo(&[
            "tree",
            "--locked",
            "-p",
            name,
            "--features",
            "lambda",
            "-e",
            "normal",
            "--prefix",
            "none",
        ]);
        let linked: BTreeSet<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for local_only in ["ureq", "rusqlite", "upsell-sqlite", "upsell-local"] {
            assert!(
                !linked.contains(local_only),
                "the {name} Lambda binary links {local_only}"
            );
        }
        assert!(
            linked.contains("lambda_runtime"),
            "{name}: `cargo tree` did not list lambda_runtime:\n{tree}"
        );
        checked += 1;
    }
    assert!(
        checked >= 6,
        "only {checked} packages have a `lambda` feature"
    );
}

/// Paths in ARCHITECTURE.md (backticked, with a `/`) exist in the repository.
#[test]
fn every_path_architecture_md_names_exists() {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (i, part) in text.split('`').enumerate() {
        // Odd parts are inside backticks.
        if i % 2 == 0 || !part.contains('/') || part.contains(char::is_whitespace) {
            continue;
        }
        if part.contains(['$', '<', '{', '*']) || part.starts_with("../") || part.contains("://") {
            continue;
        }
        checked += 1;
        if !root().join(part).exists() {
            missing.push(part.to_owned());
        }
    }
    assert!(
        checked >= 10,
        "only {checked} paths found in ARCHITECTURE.md"
    );
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}

/// One FNV-1a implementation (`upsell_core::hash`): no other source spells its prime.
#[test]
fn fnv1a_is_written_once() {
    let mut found = Vec::new();
    let mut stack = vec![root().join("crates"), root().join("workers")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs")
                || p.ends_with("crates/upsell-core/src/hash.rs")
            {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let squashed: String = text.chars().filter(|c| *c != '_').collect();
            if ["100000001b3", "1099511628211"]
                .iter()
                .any(|prime| squashed.to_ascii_lowercase().contains(prime))
            {
                found.push(p.display().to_string());
            }
        }
    }
    assert!(
        found.is_empty(),
        "FNV-1a outside upsell_core::hash: {found:?}"
    );
}

/// The engine and adapter crates expose a narrow facade: private modules, re-exports at the
/// crate root. A `pub mod` in their `lib.rs` would publish a module's whole contents.
#[test]
fn facade_crates_declare_no_pub_mod() {
    let mut found = Vec::new();
    for krate in [
        "upsell-jsonata",
        "upsell-asl",
        "upsell-sqlite",
        "upsell-local",
    ] {
        let path = root().join("crates").join(krate).join("src/lib.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default().trim_start();
            if code.starts_with("pub mod ") {
                found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "pub mod in a facade crate:\n{}",
        found.join("\n")
    );
}
