//! `cargo xtask module-cycles`: the import cycles between the files of each crate.
//!
//! A file of a crate is a module; `use crate::a::b`, `super::b` and `self::b` paths in it
//! (outside its `#[cfg(test)] mod tests`) are edges to the module they name. A cycle is a
//! strongly connected set of more than one module: files that cannot be read, or moved,
//! one without the other. Exits non-zero when any crate has one.

use anyhow::{Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose sources are checked.
const CRATES: [&str; 10] = [
    "src",
    "parser/src",
    "protocol/src",
    "storage/src",
    "replica/src",
    "serve/src",
    "find/src",
    "restore/src",
    "operator/src",
    "testkit/src",
];

pub fn module_cycles() -> Result<()> {
    let mut found = 0;
    for root in CRATES {
        let graph = import_graph(Path::new(root))?;
        let cycles = strongly_connected(&graph);
        if cycles.is_empty() {
            println!("{root}: no cycles ({} modules)", graph.len());
        }
        for cycle in &cycles {
            println!("{root}: cycle among {}", cycle.join(", "));
        }
        found += cycles.len();
    }
    if found > 0 {
        bail!("{found} import cycles between files");
    }
    Ok(())
}

/// Module path (`remote::read`) → the modules it imports.
fn import_graph(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut sources = BTreeMap::new();
    for path in rust_files(root)? {
        let relative = path.strip_prefix(root)?.with_extension("");
        let mut name = relative.to_string_lossy().replace('/', "::");
        if let Some(parent) = name.strip_suffix("::mod") {
            name = parent.to_owned();
        }
        if name == "lib" || name == "main" {
            name = "crate".to_owned();
        }
        sources.insert(name, std::fs::read_to_string(&path)?);
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, source) in &sources {
        let mut imports = BTreeSet::new();
        if module != "crate" {
            // Tests may reach anywhere; only what the module itself needs counts.
            let code = without_reexports(
                source
                    .split("#[cfg(test)]\nmod tests")
                    .next()
                    .unwrap_or_default(),
            );
            let code = code.as_str();
            for path in paths_in(code) {
                if let Some(target) = resolve(module, &path, &modules)
                    && target != *module
                    && target != "crate"
                {
                    imports.insert(target);
                }
            }
            // A child module named without `self::` (`use timeline::Event;` in `plan`).
            for child in child_modules_named(module, code, &modules) {
                imports.insert(child);
            }
        }
        graph.insert(module.clone(), imports);
    }
    Ok(graph)
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(files)
}

/// Every `crate::…`, `super::…` and `self::…` path, with `{a, b::c}` groups spread out.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let mut path: Vec<String> = Vec::new();
            let mut rest = &code[at..];
            loop {
                let ident: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if ident.is_empty() {
                    break;
                }
                rest = &rest[ident.len()..];
                path.push(ident);
                match rest.strip_prefix("::") {
                    Some(after) => rest = after,
                    None => break,
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                for item in group_items(group) {
                    let mut full = path.clone();
                    full.extend(
                        item.split("::")
                            .map(|s| {
                                s.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace())
                                    .split_whitespace()
                                    .next()
                                    .unwrap_or_default()
                                    .to_owned()
                            })
                            .filter(|s| !s.is_empty() && s != "self"),
                    );
                    paths.push(full);
                }
            } else {
                paths.push(path);
            }
        }
    }
    paths
}

/// The top-level items of a `{...}` group whose opening brace is already consumed.
fn group_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(group[start..at].trim());
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(group[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    items.retain(|item| !item.is_empty());
    items
}

/// `code` without its `pub use ...;` items: a module that re-exports a child's items (a
/// façade) does not depend on them, and counting them would make every façade a cycle.
fn without_reexports(code: &str) -> String {
    let mut kept = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("pub use ") {
        kept.push_str(&rest[..at]);
        rest = rest[at..].split_once(';').map_or("", |(_, after)| after);
    }
    kept.push_str(rest);
    kept
}

/// The child modules of `module` that `code` names by a bare path (`child::Item`).
fn child_modules_named(module: &str, code: &str, modules: &BTreeSet<String>) -> Vec<String> {
    let prefix = if module == "crate" {
        String::new()
    } else {
        format!("{module}::")
    };
    let mut found = Vec::new();
    for child in modules.iter().filter_map(|m| m.strip_prefix(&prefix)) {
        if child.contains("::") {
            continue;
        }
        let named = code.match_indices(&format!("{child}::")).any(|(at, _)| {
            at == 0 || {
                let before = code.as_bytes()[at - 1];
                !(before.is_ascii_alphanumeric() || before == b'_' || before == b':')
            }
        });
        if named {
            found.push(format!("{prefix}{child}"));
        }
    }
    found
}

/// The module a path names (its longest prefix that is a module), from `module`.
fn resolve(module: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut base: Vec<&str> = if module == "crate" {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => base.clear(),
        Some("self") => {}
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    if matches!(rest.first().map(String::as_str), Some("crate" | "self")) {
        rest = &rest[1..];
    }
    (1..=rest.len())
        .rev()
        .find_map(|n| {
            let mut candidate: Vec<&str> = base.clone();
            candidate.extend(rest[..n].iter().map(String::as_str));
            let candidate = candidate.join("::");
            modules.contains(&candidate).then_some(candidate)
        })
        // `super::Item`: an item of the module the path starts from.
        .or_else(|| {
            let base = base.join("::");
            modules.contains(&base).then_some(base)
        })
}

/// The strongly connected sets of more than one module (Tarjan's algorithm).
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        next: usize,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a str) {
            self.index.insert(node, self.next);
            self.low.insert(node, self.next);
            self.next += 1;
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        next: 0,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cycle_through_super_and_crate_paths_and_groups() {
        let modules: BTreeSet<String> = ["a", "b", "c", "remote", "remote::read", "remote::keys"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let path = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            resolve("remote::read", &path("super::keys::Codec"), &modules).as_deref(),
            Some("remote::keys")
        );
        assert_eq!(
            resolve("remote::read", &path("crate::a::Thing"), &modules).as_deref(),
            Some("a")
        );
        assert_eq!(resolve("a", &path("std::io"), &modules), None);
        assert_eq!(
            resolve("remote::read", &path("super::Store"), &modules).as_deref(),
            Some("remote")
        );
        assert_eq!(
            child_modules_named("remote", "use read::RemoteFile; x::read::y", &modules),
            vec!["remote::read"]
        );
        assert!(child_modules_named("remote", "use thread::spawn;", &modules).is_empty());
        assert_eq!(
            without_reexports("pub use read::{A,\n B};\nuse keys::K;"),
            "\nuse keys::K;"
        );
        let spread =
            paths_in("use super::{keys::{self}, read as r, Codec};\nfn f() { crate::b::g() }");
        assert!(spread.contains(&path("super::keys")), "{spread:?}");
        assert!(spread.contains(&path("super::read")), "{spread:?}");
        assert!(spread.contains(&path("crate::b::g")), "{spread:?}");
        let mut graph = BTreeMap::new();
        graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
        graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
        graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
        graph.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
        assert_eq!(strongly_connected(&graph), vec![vec!["a", "b", "c"]]);
        graph.insert("c".to_owned(), BTreeSet::new());
        assert!(strongly_connected(&graph).is_empty());
    }

    /// The workspace as it stands: the check CI runs on every change, so that a cycle
    /// fails the suite where it is made, not when someone next runs `cargo xtask`.
    #[test]
    fn no_crate_of_the_workspace_has_an_import_cycle() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask sits in the workspace");
        for root in CRATES {
            let graph = import_graph(&workspace.join(root)).expect(root);
            assert!(graph.len() > 1, "{root}: no modules found");
            assert_eq!(
                strongly_connected(&graph),
                Vec::<Vec<String>>::new(),
                "{root}"
            );
        }
    }
}
