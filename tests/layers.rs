//! The library's modules depend on each other one way: no module reaches, through the paths its
//! code names (`crate::…`, `super::…`), a module that reaches it back. Doc comments and tests are
//! left out: a link in prose is no dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every library module (`src/bin` aside), by path (`gpu::engine`), with its code.
fn modules() -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    let mut folders = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    let root = folders[0].clone();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() != "bin" {
                    folders.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            modules.insert(parts.join("::"), code);
        }
    }
    modules
}

/// The module a path names: its longest prefix that is a module.
fn resolve<'a>(modules: &'a BTreeMap<String, String>, path: &str) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len()).rev().find_map(|n| {
        modules
            .get_key_value(&parts[..n].join("::"))
            .map(|(k, _)| k)
    })
}

/// The identifiers after `prefix` in `code`, with their `::`s: `crate::gpu::engine::X`.
fn paths_after<'a>(code: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    code.match_indices(prefix).map(move |(at, _)| {
        let rest = &code[at + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        &rest[..end]
    })
}

fn dependencies(modules: &BTreeMap<String, String>) -> BTreeMap<&String, BTreeSet<&String>> {
    modules
        .iter()
        .map(|(name, code)| {
            let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
            let named = paths_after(code, "crate::")
                .map(str::to_owned)
                .chain(paths_after(code, "super::").map(|p| format!("{parent}::{p}")));
            let targets = named
                .filter_map(|path| resolve(modules, &path))
                // A module's own children and ancestors are its parts, not its dependencies.
                .filter(|t| *t != name && !name.starts_with(&format!("{t}::")))
                .filter(|t| !t.starts_with(&format!("{name}::")))
                .collect();
            (name, targets)
        })
        .collect()
}

#[test]
fn no_module_depends_on_one_that_depends_on_it() {
    let modules = modules();
    assert!(modules.contains_key("gpu::engine") && modules.contains_key("io::rows"));
    let edges = dependencies(&modules);
    // Everything each module reaches, by a walk from it, remembering the way back.
    for start in edges.keys() {
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut stack: Vec<(&String, &String)> =
            edges[start].iter().map(|d| (*d, *start)).collect();
        while let Some((module, from)) = stack.pop() {
            if came_from.contains_key(module) {
                continue;
            }
            came_from.insert(module, from);
            if module == *start {
                let mut way = vec![module.as_str()];
                let mut at = from;
                while at != *start {
                    way.push(at);
                    at = came_from[at];
                }
                way.push(start);
                way.reverse();
                panic!("a cycle: {}", way.join(" -> "));
            }
            stack.extend(
                edges
                    .get(module)
                    .into_iter()
                    .flatten()
                    .map(|d| (*d, module)),
            );
        }
    }
}

#[test]
fn the_checker_sees_a_cycle_when_there_is_one() {
    let mut modules = BTreeMap::new();
    modules.insert("a".to_owned(), "use crate::b::Thing;".to_owned());
    modules.insert("b".to_owned(), "fn f() -> crate::a::Other {}".to_owned());
    modules.insert("c".to_owned(), "use super::a;".to_owned());
    let edges = dependencies(&modules);
    assert!(edges[&"a".to_owned()].contains(&"b".to_owned()));
    assert!(edges[&"b".to_owned()].contains(&"a".to_owned()));
    assert!(edges[&"c".to_owned()].contains(&"a".to_owned()));
}
