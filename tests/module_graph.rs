//! The crate's module graph points one way: read from the sources, the
//! references between files (`use` statements and inline `crate::` /
//! `super::` paths, with re-exports followed to the file that defines the
//! item) have no circle but the documented `agent <-> lifecycle` pair
//! between modules, and none at all between the files of `bus/` and
//! `broker/` (backend folders import the shared parts, never the reverse).
//!
//! Re-exports (`pub use`, `pub(crate) use`) are a module's surface, not a
//! dependency: they are followed, not counted. The crate root (`lib.rs`),
//! which declares and re-exports everything, is left out, as is test code
//! at the end of a file (`#[cfg(test)] mod tests { ... }`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (`["bus", "redis"]`).
type ModPath = Vec<String>;

struct Module {
    file: PathBuf,
    /// Names its `use` statements bring in: name -> absolute path.
    imports: BTreeMap<String, ModPath>,
    /// Paths it refers to outside re-exports (absolute).
    refers: Vec<ModPath>,
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a readable source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments, string literals and its trailing
/// test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        };
        // Drop string literals (paths in messages are not references).
        let mut in_string = false;
        let mut escaped = false;
        for c in line.chars() {
            if in_string {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => escaped = false,
                }
                continue;
            }
            if c == '"' {
                in_string = true;
                continue;
            }
            out.push(c);
        }
        out.push('\n');
    }
    out
}

/// Expands a `use` tree (`a::{b, c::d as e, f::*}`) into `(name, path)`.
fn expand_use(tree: &str, prefix: &[String], out: &mut Vec<(String, Vec<String>)>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let mut path = prefix.to_vec();
        path.extend(
            head.split("::")
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().to_owned()),
        );
        let inner = &tree[open + 1..tree.rfind('}').expect("a closing brace")];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..i], &path, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &path, out);
        return;
    }
    let (path_text, alias) = match tree.split_once(" as ") {
        Some((path, alias)) => (path.trim(), Some(alias.trim())),
        None => (tree, None),
    };
    let mut path = prefix.to_vec();
    path.extend(path_text.split("::").map(|s| s.trim().to_owned()));
    if path.last().is_some_and(|s| s == "*") {
        return;
    }
    if path.last().is_some_and(|s| s == "self") {
        path.pop();
    }
    let name = alias
        .map(str::to_owned)
        .or_else(|| path.last().cloned())
        .unwrap_or_default();
    out.push((name, path));
}

/// Makes a path absolute from module `at` (`crate::`, `super::`, `self::`,
/// or a child module's name); `None` for another crate's path.
fn absolute(at: &ModPath, path: &[String], files: &BTreeSet<ModPath>) -> Option<ModPath> {
    let first = path.first()?;
    let mut base: ModPath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => at.clone(),
        "super" => at.clone(),
        _ => {
            let mut child = at.clone();
            child.push(first.clone());
            if !files.contains(&child) {
                return None;
            }
            let mut whole = at.clone();
            whole.extend(path.iter().cloned());
            return Some(whole);
        }
    };
    let mut rest = &path[1..];
    if first == "super" {
        base.pop();
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The `use` statements of `code`: `(is a re-export, tree)`.
fn use_statements(code: &str) -> Vec<(bool, String)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = find_use(rest) {
        let (public, start) = at;
        let end = rest[start..].find(';').map_or(rest.len(), |e| start + e);
        found.push((public, rest[start..end].to_owned()));
        rest = &rest[end..];
    }
    found
}

/// Where the next `use` tree starts, and whether its statement is `pub`.
fn find_use(code: &str) -> Option<(bool, usize)> {
    let mut search = 0;
    while let Some(offset) = code[search..].find("use ") {
        let at = search + offset;
        let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
        let before = code[line_start..at].trim();
        if before.is_empty() || before.starts_with("pub") {
            return Some((before.starts_with("pub"), at + 4));
        }
        search = at + 4;
    }
    None
}

/// Inline paths (`crate::a::b`, `super::c`) outside `use` statements.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for root in ["crate::", "super::", "self::"] {
        let mut search = 0;
        while let Some(offset) = code[search..].find(root) {
            let at = search + offset;
            search = at + root.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let tail: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path: Vec<String> = tail
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            found.push(path);
        }
    }
    found
}

fn read_modules(src: &Path) -> BTreeMap<ModPath, Module> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let paths: BTreeSet<ModPath> = files.iter().map(|f| module_path(src, f)).collect();
    let mut modules = BTreeMap::new();
    for file in files {
        let at = module_path(src, &file);
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let code = code_of(&text);
        let mut imports = BTreeMap::new();
        let mut refers = Vec::new();
        let uses = use_statements(&code);
        let mut without_uses = code.clone();
        for (public, tree) in &uses {
            without_uses = without_uses.replacen(tree.as_str(), "", 1);
            let mut expanded = Vec::new();
            expand_use(tree, &[], &mut expanded);
            for (name, path) in expanded {
                let Some(target) = absolute(&at, &path, &paths) else {
                    continue;
                };
                if !*public {
                    refers.push(target.clone());
                }
                imports.insert(name, target);
            }
        }
        for path in inline_paths(&without_uses) {
            if let Some(target) = absolute(&at, &path, &paths) {
                refers.push(target);
            }
        }
        modules.insert(
            at,
            Module {
                file,
                imports,
                refers,
            },
        );
    }
    modules
}

/// The file a path's item is defined in, re-exports followed.
fn defining_file(modules: &BTreeMap<ModPath, Module>, path: &ModPath, depth: usize) -> ModPath {
    let mut file_len = 0;
    for len in 0..=path.len() {
        if modules.contains_key(&path[..len].to_vec()) {
            file_len = len;
        }
    }
    let file = path[..file_len].to_vec();
    if depth < 16 {
        if let Some(name) = path.get(file_len) {
            if let Some(target) = modules[&file].imports.get(name) {
                if target != path {
                    let mut next = target.clone();
                    next.extend(path[file_len + 1..].iter().cloned());
                    return defining_file(modules, &next, depth + 1);
                }
            }
        }
    }
    file
}

/// The strongly connected components of more than one node (Tarjan's).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        found: Vec<BTreeSet<String>>,
    }
    fn visit(state: &mut State<'_>, node: &str) {
        let n = state.index.len();
        state.index.insert(node.to_owned(), n);
        state.low.insert(node.to_owned(), n);
        state.stack.push(node.to_owned());
        state.on_stack.insert(node.to_owned());
        let next: Vec<String> = state
            .edges
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for to in next {
            if !state.index.contains_key(&to) {
                visit(state, &to);
                let low = state.low[node].min(state.low[&to]);
                state.low.insert(node.to_owned(), low);
            } else if state.on_stack.contains(&to) {
                let low = state.low[node].min(state.index[&to]);
                state.low.insert(node.to_owned(), low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut component = BTreeSet::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(&top);
                let done = top == node;
                component.insert(top);
                if done {
                    break;
                }
            }
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    let nodes: Vec<String> = edges.keys().cloned().collect();
    for node in nodes {
        if !state.index.contains_key(&node) {
            visit(&mut state, &node);
        }
    }
    state.found
}

/// Every file-to-file reference: `(from, to)` as module paths.
fn file_edges(modules: &BTreeMap<ModPath, Module>) -> BTreeSet<(ModPath, ModPath)> {
    let mut edges = BTreeSet::new();
    for (at, module) in modules {
        for path in &module.refers {
            let to = defining_file(modules, path, 0);
            if &to != at && !at.is_empty() && !to.is_empty() {
                edges.insert((at.clone(), to));
            }
        }
    }
    edges
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn modules_import_each_other_one_way_but_agent_and_lifecycle() {
    let modules = read_modules(&src());
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in file_edges(&modules) {
        if from[0] != to[0] {
            edges
                .entry(from[0].clone())
                .or_default()
                .insert(to[0].clone());
        }
    }
    let allowed: BTreeSet<String> = ["agent", "lifecycle"].map(str::to_owned).into();
    let found: Vec<_> = circles(&edges)
        .into_iter()
        .filter(|c| *c != allowed)
        .collect();
    assert!(
        found.is_empty(),
        "module circles: {found:?}\nedges: {edges:#?}"
    );
}

#[test]
fn the_files_of_the_bus_and_the_broker_import_each_other_one_way() {
    let modules = read_modules(&src());
    for channel in ["bus", "broker"] {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in file_edges(&modules) {
            if from[0] == channel && to[0] == channel {
                edges
                    .entry(modules[&from].file.display().to_string())
                    .or_default()
                    .insert(modules[&to].file.display().to_string());
            }
        }
        assert!(
            edges.len() > 5,
            "{channel}: too few references read: {edges:#?}"
        );
        let found = circles(&edges);
        assert!(found.is_empty(), "{channel}: file circles: {found:#?}");
    }
}

#[test]
fn the_shared_parts_of_a_channel_name_no_backend() {
    let modules = read_modules(&src());
    let backends = ["redis", "amqp"];
    for (from, to) in file_edges(&modules) {
        let in_channel = matches!(from[0].as_str(), "bus" | "broker");
        let from_backend = from.get(1).is_some_and(|m| backends.contains(&m.as_str()));
        let to_backend = to.get(1).is_some_and(|m| backends.contains(&m.as_str()));
        if in_channel && to_backend && !from_backend {
            panic!("{from:?} refers to the backend {to:?}");
        }
    }
}

#[test]
fn the_reader_sees_references_it_is_meant_to() {
    // The checks above are only as good as the reading: known arrows must
    // be there, and a circle made up must be found.
    let modules = read_modules(&src());
    let edges = file_edges(&modules);
    let bus_redis = vec!["bus".to_owned(), "redis".to_owned()];
    let transport = vec!["bus".to_owned(), "transport".to_owned()];
    assert!(
        edges.contains(&(bus_redis, transport)),
        "bus/redis -> bus/transport"
    );
    let handle = vec!["broker".to_owned(), "handle".to_owned()];
    let remote = vec!["broker".to_owned(), "remote".to_owned()];
    assert!(
        edges.contains(&(handle, remote)),
        "broker/handle -> broker/remote"
    );
    let mut made_up: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    made_up.entry("a".into()).or_default().insert("b".into());
    made_up.entry("b".into()).or_default().insert("c".into());
    made_up.entry("c".into()).or_default().insert("a".into());
    assert_eq!(circles(&made_up).len(), 1);
}
