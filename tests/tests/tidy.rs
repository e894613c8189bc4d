//! The dependency rules of ARCHITECTURE.md, checked over `cargo metadata` (as rust-analyzer's
//! tidy tests check theirs) so that they are enforced, not remembered. A new crate, or a new edge
//! between crates, fails here until the table below and ARCHITECTURE.md say it is allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// One workspace crate's rules: the workspace crates it may depend on (normal dependencies),
/// whether it may link libtorch (through any path of normal dependencies), and whether it is a
/// binary crate (the only ones that may use `anyhow`).
struct Rule {
    name: &'static str,
    may_use: &'static [&'static str],
    links_libtorch: bool,
    binary: bool,
}

const fn rule(
    name: &'static str,
    may_use: &'static [&'static str],
    links_libtorch: bool,
    binary: bool,
) -> Rule {
    Rule {
        name,
        may_use,
        links_libtorch,
        binary,
    }
}

/// ARCHITECTURE.md's table.
const RULES: &[Rule] = &[
    rule("flan-contain", &[], false, false),
    rule("flan-build", &[], false, false),
    rule("flan-fuzz", &[], false, false),
    rule("flan-hub", &[], false, false),
    rule("flan-data", &["flan-contain"], false, false),
    rule(
        "flan-eval",
        &["flan-data", "flan-hub", "flan-contain"],
        false,
        false,
    ),
    rule("flan-model", &["flan-contain", "flan-hub"], true, false),
    rule("flan-dist", &[], true, false),
    rule(
        "flan-train",
        &["flan-data", "flan-model", "flan-dist"],
        true,
        false,
    ),
    rule(
        "flan-eval-t5",
        &["flan-data", "flan-eval", "flan-model"],
        true,
        false,
    ),
    rule("flan-serve", &["flan-data", "flan-model"], true, false),
    rule(
        "flan-cli",
        &[
            "flan-contain",
            "flan-data",
            "flan-model",
            "flan-train",
            "flan-eval",
            "flan-eval-t5",
            "flan-serve",
        ],
        true,
        true,
    ),
    rule("flan-tests", &["flan-data", "flan-model"], true, false),
    rule("xtask", &[], false, true),
];

/// Crates whose presence means libtorch is linked.
const LIBTORCH: [&str; 2] = ["torch-sys", "tch"];

/// Workspace crates that are only ever build- or dev-dependencies.
const TOOLS: [(&str, &str); 2] = [("flan-build", "build"), ("flan-fuzz", "dev")];

struct Graph {
    /// Package id -> name.
    names: BTreeMap<String, String>,
    /// Workspace member names.
    members: BTreeSet<String>,
    /// Package id -> (dependency id, kinds) of its resolved dependencies.
    deps: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

impl Graph {
    fn load() -> Graph {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .expect("cargo metadata runs");
        assert!(
            out.status.success(),
            "cargo metadata: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
        let names: BTreeMap<String, String> = meta["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().into(),
                    p["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        let members = meta["workspace_members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| names[id.as_str().unwrap()].clone())
            .collect();
        let deps = meta["resolve"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|node| {
                let edges = node["deps"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| {
                        let kinds = d["dep_kinds"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|k| k["kind"].as_str().unwrap_or("normal").to_string())
                            .collect();
                        (d["pkg"].as_str().unwrap().to_string(), kinds)
                    })
                    .collect();
                (node["id"].as_str().unwrap().to_string(), edges)
            })
            .collect();
        Graph {
            names,
            members,
            deps,
        }
    }

    fn id_of(&self, name: &str) -> &str {
        self.names
            .iter()
            .find(|(id, n)| *n == name && self.deps.contains_key(*id))
            .map(|(id, _)| id.as_str())
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    /// Names of `name`'s dependencies of `kind` (`normal`, `build`, `dev`).
    fn direct(&self, name: &str, kind: &str) -> BTreeSet<String> {
        self.deps[self.id_of(name)]
            .iter()
            .filter(|(_, kinds)| kinds.iter().any(|k| k == kind))
            .map(|(id, _)| self.names[id].clone())
            .collect()
    }

    /// Every package reached from `name` through normal dependencies, with the path to it.
    fn reached(&self, name: &str) -> BTreeMap<String, Vec<String>> {
        let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stack = vec![(self.id_of(name).to_string(), vec![name.to_string()])];
        while let Some((id, path)) = stack.pop() {
            for (dep, kinds) in &self.deps[&id] {
                let dep_name = &self.names[dep];
                if !kinds.iter().any(|k| k == "normal") || paths.contains_key(dep_name) {
                    continue;
                }
                let mut next = path.clone();
                next.push(dep_name.clone());
                paths.insert(dep_name.clone(), next.clone());
                stack.push((dep.clone(), next));
            }
        }
        paths
    }
}

/// Every rule broken in the workspace, one line each.
fn violations(graph: &Graph) -> Vec<String> {
    let mut found = Vec::new();
    let ruled: BTreeSet<String> = RULES.iter().map(|r| r.name.to_string()).collect();
    for member in graph.members.difference(&ruled) {
        found.push(format!(
            "{member}: a workspace crate without a rule (add it to ARCHITECTURE.md and tidy.rs)"
        ));
    }
    for rule in RULES {
        if !graph.members.contains(rule.name) {
            found.push(format!(
                "{}: in the rules but not in the workspace",
                rule.name
            ));
            continue;
        }
        let workspace_deps: BTreeSet<String> = graph
            .direct(rule.name, "normal")
            .into_iter()
            .filter(|d| graph.members.contains(d))
            .collect();
        for dep in &workspace_deps {
            if !rule.may_use.contains(&dep.as_str()) {
                found.push(format!("{} depends on {dep}, which it may not", rule.name));
            }
        }
        let reached = graph.reached(rule.name);
        if !rule.links_libtorch {
            for torch in LIBTORCH {
                if let Some(path) = reached.get(torch) {
                    found.push(format!(
                        "{} links libtorch: {}",
                        rule.name,
                        path.join(" -> ")
                    ));
                }
            }
        }
        if !rule.binary && graph.direct(rule.name, "normal").contains("anyhow") {
            found.push(format!(
                "{} is a library and uses anyhow (libraries have one thiserror enum)",
                rule.name
            ));
        }
        for (tool, kind) in TOOLS {
            if workspace_deps.contains(tool) {
                found.push(format!(
                    "{} depends on {tool} as a normal dependency; it is a {kind}-dependency only",
                    rule.name
                ));
            }
        }
    }
    found
}

#[test]
fn the_crates_depend_on_each_other_as_architecture_md_says() {
    let found = violations(&Graph::load());
    assert!(
        found.is_empty(),
        "dependency rules broken:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn architecture_md_names_every_crate() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md at the root");
    for rule in RULES {
        assert!(
            doc.contains(&format!("`{}`", rule.name)),
            "ARCHITECTURE.md does not describe `{}`",
            rule.name
        );
    }
}
