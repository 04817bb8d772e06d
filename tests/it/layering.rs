//! The layering check: reads the `crate::…` paths of `src/` (its `use` lines and the paths
//! written inline) and fails when a module imports a module of a higher layer, or when the
//! files import each other in a circle. The allowed order is [`LAYERS`], the one place it is
//! written; docs/architecture.md explains it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A top-level module of `src/` may use only modules of a lower
/// layer (and itself). Every top-level module must be listed.
const LAYERS: &[&[&str]] = &[
    // Leaves: they use nothing of the crate.
    &["secret", "metrics", "shutdown", "logging"],
    // The records and ids everything else speaks of.
    &["model"],
    // Domain helpers over the model: session tokens, organisations' keys and templates,
    // the Twilio library (REST, signatures, TwiML).
    &["auth", "org", "twilio"],
    // Durable storage.
    &["store"],
    // The other adapters: media planes, summaries, webhooks, the event hub.
    &["media", "summary", "webhooks", "hub"],
    // Calls: the pure machine, the actor, the registry, the call service.
    &["call"],
    // Settings: builds every adapter's settings from the environment.
    &["config"],
    // Transports: the generic WebSocket session, then HTTP (REST, webhooks, the session
    // handler).
    &["ws"],
    &["http"],
    // Startup.
    &["app"],
];

/// File pairs that may import each other: one concept split in two files.
const ONE_CONCEPT: &[(&str, &str)] = &[
    // The call actor and the registry that supervises it: the registry creates and restarts
    // actors; an actor tells the registry of its changes.
    ("call/actor.rs", "call/registry.rs"),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src/`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p.strip_prefix(src_dir()).unwrap().to_path_buf());
        }
    }
}

/// Whether a file holds tests only (they may reach anything).
fn is_test_file(rel: &Path) -> bool {
    let name = rel.file_name().unwrap().to_string_lossy();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with("conformance"))
}

/// The code of a file that is not a test: every item but those under `#[cfg(test)]` at the
/// top level, with `//` comments removed.
fn product_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.starts_with("#[cfg(test)]") {
            // Skip the item: its attributes, then one line ending in `;`, or up to its `}`.
            for item in lines.by_ref() {
                if item.starts_with("#[") {
                    continue;
                }
                if !item.trim_end().ends_with(';') {
                    for body in lines.by_ref() {
                        if body == "}" {
                            break;
                        }
                    }
                }
                break;
            }
            continue;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The module path of a file (`call/actor.rs` → `["call", "actor"]`, `http/mod.rs` →
/// `["http"]`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// Every path the code names: `crate::a::b` (also inside `use` groups such as
/// `use crate::{a, b::{c, d}}`) and `super::x`, resolved to absolute module paths (without
/// `crate`).
fn paths_named(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_word_start = i == 0 || !ident(bytes[i - 1]);
        let rest = &bytes[i..];
        let (base, skip) = if at_word_start && rest.starts_with(b"crate::") {
            (Vec::new(), "crate::".len())
        } else if at_word_start && rest.starts_with(b"super::") {
            // The parent module (for `a/b.rs` and `a/b/mod.rs` alike: `a`).
            let mut base = module.to_vec();
            base.pop();
            (base, "super::".len())
        } else {
            i += 1;
            continue;
        };
        i += skip + use_tree(&code[i + skip..], base, &mut found);
    }
    found
}

/// Parses a path or `use` tree at the start of `code` under `prefix` (`a::b`,
/// `a::{b, c::d}`, `{a, b}`), pushing every path it names; returns the bytes read.
fn use_tree(code: &str, mut prefix: Vec<String>, found: &mut Vec<Vec<String>>) -> usize {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut j = 0;
    loop {
        let rest = &code[j..];
        let trimmed = rest.trim_start();
        j += rest.len() - trimmed.len();
        if trimmed.starts_with('{') {
            // A group: each item at depth 1 is a tree of its own.
            let mut depth = 0;
            let mut item_start = j + 1;
            let mut k = j;
            for (off, c) in code[j..].char_indices() {
                k = j + off;
                match c {
                    '{' => depth += 1,
                    '}' | ',' if depth == 1 => {
                        use_tree(&code[item_start..k], prefix.clone(), found);
                        item_start = k + 1;
                        if c == '}' {
                            break;
                        }
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            return k + 1;
        }
        let len = trimmed.find(|c: char| !ident(c)).unwrap_or(trimmed.len());
        if len == 0 {
            break;
        }
        prefix.push(trimmed[..len].to_string());
        j += len;
        if code[j..].starts_with("::") {
            j += 2;
        } else {
            break;
        }
    }
    if !prefix.is_empty() && prefix.iter().all(|s| s != "self") {
        found.push(prefix);
    }
    j
}

/// The file a module path lands in: the longest prefix of it that is a file of `src/`.
fn file_of(path: &[String], files: &BTreeSet<PathBuf>) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let stem: PathBuf = path[..n].iter().collect();
        for candidate in [stem.with_extension("rs"), stem.join("mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The layer of each top-level module.
fn layer_of() -> BTreeMap<&'static str, usize> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect()
}

/// The imports between files of `src/`, product code only: file → files it names.
fn file_graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut all = Vec::new();
    rust_files(&src_dir(), &mut all);
    let files: BTreeSet<PathBuf> = all.iter().cloned().collect();
    let mut graph = BTreeMap::new();
    for rel in all.iter().filter(|r| !is_test_file(r)) {
        let text = std::fs::read_to_string(src_dir().join(rel)).unwrap();
        let module = module_of(rel);
        let targets: BTreeSet<PathBuf> = paths_named(&product_code(&text), &module)
            .iter()
            .filter_map(|p| file_of(p, &files))
            .filter(|t| t != rel && !is_test_file(t))
            .collect();
        graph.insert(rel.clone(), targets);
    }
    graph
}

fn top_module(rel: &Path) -> String {
    module_of(rel).first().cloned().unwrap_or_default()
}

/// The upward imports in `graph`: (file, the file it names, why).
fn upward(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<String> {
    let layers = layer_of();
    let mut found = Vec::new();
    for (from, targets) in graph {
        let m = top_module(from);
        if m.is_empty() {
            continue; // lib.rs and main.rs declare and compose everything
        }
        let Some(&own) = layers.get(m.as_str()) else {
            found.push(format!(
                "{}: module {m} is in no layer of LAYERS",
                from.display()
            ));
            continue;
        };
        for to in targets {
            let t = top_module(to);
            if t == m || t.is_empty() {
                continue;
            }
            match layers.get(t.as_str()) {
                Some(&theirs) if theirs < own => {}
                Some(_) => found.push(format!(
                    "{} (layer {own}, {m}) imports {} (layer of {t}): upward or sideways",
                    from.display(),
                    to.display()
                )),
                None => found.push(format!("{}: module {t} is in no layer", to.display())),
            }
        }
    }
    found
}

/// Circles between files (strongly connected components of more than one file), leaving
/// out the pairs of [`ONE_CONCEPT`].
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    let allowed = |a: &Path, b: &Path| {
        ONE_CONCEPT.iter().any(|(x, y)| {
            (a == Path::new(x) && b == Path::new(y)) || (a == Path::new(y) && b == Path::new(x))
        })
    };
    // A module and its own submodules are one module: a parent that uses its children and
    // children that use their parent's items make no circle between modules.
    let nested = |a: &Path, b: &Path| {
        let (ma, mb) = (module_of(a), module_of(b));
        ma.starts_with(&mb) || mb.starts_with(&ma)
    };
    let edges: BTreeMap<&PathBuf, Vec<&PathBuf>> = graph
        .iter()
        .map(|(a, ts)| {
            let kept = ts.iter().filter(|b| !allowed(a, b) && !nested(a, b));
            (a, kept.collect())
        })
        .collect();
    // Tarjan's algorithm, iteratively small enough to be recursive here.
    struct Tarjan<'a> {
        edges: &'a BTreeMap<&'a PathBuf, Vec<&'a PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        next: usize,
        out: Vec<Vec<PathBuf>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a PathBuf) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.edges.get(v).map(Vec::as_slice).unwrap_or_default() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(*v) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn modules_import_only_lower_layers() {
    let graph = file_graph();
    assert!(graph.len() > 50, "read the sources: {} files", graph.len());
    let found = upward(&graph);
    assert!(
        found.is_empty(),
        "imports against the layers (tests/it/layering.rs: LAYERS):\n{}",
        found.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let found = circles(&file_graph());
    assert!(
        found.is_empty(),
        "import circles between files:\n{}",
        found
            .iter()
            .map(|c| c
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" → "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The check itself: an upward import, a sideways one and a circle are each reported.
#[test]
fn the_check_reports_an_upward_import_and_a_circle() {
    let paths = paths_named(
        "use crate::http::{ApiError, principal};\nuse crate::{model::Call, store};\nlet x = crate::metrics::metrics();\nuse super::service;",
        &["call".into(), "actor".into()],
    );
    assert!(paths.contains(&vec!["http".to_string(), "ApiError".to_string()]));
    assert!(paths.contains(&vec!["model".to_string(), "Call".to_string()]));
    assert!(paths.contains(&vec!["store".to_string()]));
    assert!(paths.contains(&vec!["metrics".to_string(), "metrics".to_string()]));
    assert!(paths.contains(&vec!["call".to_string(), "service".to_string()]));

    let p = PathBuf::from;
    let mut graph = file_graph();
    graph
        .get_mut(&p("store/mod.rs"))
        .unwrap()
        .insert(p("http/mod.rs"));
    graph
        .get_mut(&p("hub.rs"))
        .unwrap()
        .insert(p("summary/mod.rs"));
    let found = upward(&graph).join("\n");
    assert!(
        found.contains("store/mod.rs (layer 3, store) imports http/mod.rs"),
        "{found}"
    );
    assert!(
        found.contains("hub.rs (layer 4, hub) imports summary/mod.rs"),
        "{found}"
    );

    let mut graph = file_graph();
    let model = [p("model.rs"), p("model/mod.rs")]
        .into_iter()
        .find(|m| graph.contains_key(m))
        .unwrap();
    graph.get_mut(&model).unwrap().insert(p("auth.rs"));
    graph.get_mut(&p("auth.rs")).unwrap().insert(model);
    assert!(!circles(&graph).is_empty(), "a circle is found");
}
