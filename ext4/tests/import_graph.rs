//! The engine's modules import each other without a circle: the graph of
//! `use` edges between the crate's top-level modules (read from the source,
//! test modules left out) is acyclic. The one exemption is an import of the
//! handle type alone (`use super::fs::Fs;`): a module that adds an
//! `impl Fs` block for its concern needs the type, and `fs.rs` reaches those
//! methods by method call, not by import.
//!
//! `FSVC_IMPORT_GRAPH=1` prints the graph (one `module -> dependencies`
//! line per module) for the docs and reviews.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`io/cache.rs` → `io`,
/// `superblock/tests.rs` → `superblock`); `None` for lib.rs and for files
/// that only hold tests.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src_dir()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    let stem = path.file_stem()?.to_str()?;
    if name == "lib" || stem == "tests" || stem.ends_with("_tests") || name == "testblocks" {
        return None;
    }
    Some(name)
}

/// The source without comments and without its `#[cfg(test)] mod tests`
/// (tests may use anything).
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            let next = lines.peek().map(|l| l.trim_start()).unwrap_or("");
            if next.starts_with("mod tests") {
                break;
            }
        }
        let code = match t.find("//") {
            Some(i) => &t[..i],
            None => t,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Names the crate root re-exports, with the module they come from.
fn root_reexports() -> BTreeMap<String, String> {
    let lib = std::fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let mut map = BTreeMap::new();
    for stmt in production_code(&lib).split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        for item in items.trim_matches(|c| c == '{' || c == '}').split(',') {
            let item = item.trim();
            if !item.is_empty() {
                map.insert(item.to_string(), module.trim().to_string());
            }
        }
    }
    map
}

/// The modules `code` (of top-level module `me`) refers to through `super::`
/// or `crate::` paths, with the `fs::Fs`-only imports left out.
fn references(
    me: &str,
    in_subdir: bool,
    code: &str,
    reexports: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let flat: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    for (prefix, relative_to_me) in [("crate::", false), ("super::", in_subdir)] {
        let mut rest = flat.as_str();
        while let Some(i) = rest.find(prefix) {
            // A path segment boundary: not the tail of another identifier.
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if relative_to_me {
                // `super::` inside io/ points at io itself.
                continue;
            }
            let seg: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if seg.is_empty() {
                continue;
            }
            let after = &rest[seg.len()..];
            let target = if seg.chars().next().is_some_and(char::is_uppercase) {
                match reexports.get(&seg) {
                    Some(m) => m.clone(),
                    None => continue,
                }
            } else {
                seg.clone()
            };
            if target == me || target == "self" {
                continue;
            }
            if target == "fs" && imports_only_fs_type(after) {
                continue;
            }
            deps.insert(target);
        }
    }
    deps
}

/// Whether the path tail after `fs` names the `Fs` type alone
/// (`::Fs;`, `::Fs,` in a group, `::{Fs}`), or `crate::Fs` was used.
fn imports_only_fs_type(after: &str) -> bool {
    let t = after.trim_start();
    if let Some(rest) = t.strip_prefix("::") {
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("Fs") {
            return !r.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':');
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            return inner
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .all(|s| s == "Fs");
        }
        return false;
    }
    // `crate::Fs` resolved through the root re-export.
    true
}

fn graph() -> Graph {
    let reexports = root_reexports();
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut g = Graph::new();
    for f in files {
        let Some(me) = module_of(&f) else { continue };
        let in_subdir = f.parent() != Some(src_dir().as_path());
        let code = production_code(&std::fs::read_to_string(&f).unwrap());
        let deps = references(&me, in_subdir, &code, &reexports);
        g.entry(me).or_default().extend(deps);
    }
    g
}

/// A cycle of `g`, if it has one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == d).unwrap();
                    let mut c = stack[from..].to_vec();
                    c.push(d.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn engine_modules_import_each_other_without_a_circle() {
    let g = graph();
    if std::env::var("FSVC_IMPORT_GRAPH").as_deref() == Ok("1") {
        for (m, deps) in &g {
            let d: Vec<&str> = deps.iter().map(String::as_str).collect();
            println!("{m} -> {}", d.join(", "));
        }
    }
    // The scan must see the modules, or the test proves nothing.
    for m in ["fs", "inode", "dir", "dirent", "types", "io", "superblock"] {
        assert!(g.contains_key(m), "module {m} not found in {g:?}");
    }
    assert!(g["inode"].contains("superblock"), "edges not found: {g:?}");
    assert!(
        !g["types"].iter().any(|d| d != "num"),
        "types depends on {:?}",
        g["types"]
    );
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle: {}\ngraph: {g:#?}", c.join(" -> "));
    }
}

#[test]
fn the_scan_sees_a_cycle_and_the_fs_exemption() {
    let reexports = BTreeMap::from([("Error".to_string(), "error".to_string())]);
    let a = references("a", false, "use super::b::X; use crate::Error;", &reexports);
    assert_eq!(a, BTreeSet::from(["b".to_string(), "error".to_string()]));
    let b = references(
        "b",
        false,
        "use super::fs::Fs; use super::a::{Y, Z};",
        &reexports,
    );
    assert_eq!(b, BTreeSet::from(["a".to_string()]));
    let c = references("c", false, "use super::fs::{Fs, ROOT};", &reexports);
    assert_eq!(c, BTreeSet::from(["fs".to_string()]));
    let g = Graph::from([
        ("a".into(), a),
        ("b".into(), b),
        ("error".into(), BTreeSet::new()),
    ]);
    let cycle = find_cycle(&g).expect("a <-> b is a cycle");
    assert!(cycle.contains(&"a".to_string()) && cycle.contains(&"b".to_string()));
}
