//! The module layering of `engine/src`, checked from the source so that it stays true: no
//! module imports another that (directly or not) imports it back, and the parts a database
//! is made of never reach up into `inner` (the database) or the API above it.
//!
//! A module is a file `src/NAME.rs` or a directory `src/NAME/`. What counts as an import is
//! any path `crate::NAME` in code (comments and `#[cfg(test)]` sections excluded: doc links
//! and tests may name anything).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `module -> modules it names`, for every module of the crate.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" {
            continue;
        }
        let text = sources.entry(name).or_default();
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                text.push_str(&code_of(&std::fs::read_to_string(file.unwrap().path()).unwrap()));
            }
        } else {
            text.push_str(&code_of(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    sources
        .iter()
        .map(|(name, text)| {
            let named = crate_paths(text)
                .into_iter()
                .filter(|m| modules.contains(m) && m != name)
                .collect();
            (name.clone(), named)
        })
        .collect()
}

/// The code of a file: up to its first `#[cfg(test)]`, without comment lines.
fn code_of(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// The first segment of every `crate::` path, including those inside `crate::{a::X, b}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.insert(ident(item.trim()));
            }
        } else {
            found.insert(ident(rest));
        }
    }
    found
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().unwrap().clone();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = module_graph();
    assert!(graph.contains_key("inner") && graph.contains_key("db"), "modules moved: {graph:?}");
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_parts_of_a_database_never_reach_up_into_it() {
    let graph = module_graph();
    let above =
        ["inner", "db", "sharded", "verify", "write", "flush", "compaction", "read", "transaction"];
    let parts = [
        "commit",
        "conflict",
        "version_set",
        "background",
        "health",
        "state",
        "async_write",
        "table_cache",
        "memtable",
        "metrics",
        "options",
    ];
    for part in parts {
        let named = &graph[part];
        for up in above {
            assert!(!named.contains(up), "`{part}` imports `{up}`, which is built on it");
        }
    }
    // The plain database never depends on the sharded layer built on top of it.
    for module in ["db", "inner", "write", "recovery", "snapshot"] {
        assert!(!graph[module].contains("sharded"), "`{module}` imports `sharded`");
    }
}
