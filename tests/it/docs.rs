//! The documentation stays true to the code: every setting the server reads is in
//! `.env.example` and `docs/configuration.md`; README.md stays short; every relative link in
//! README.md and `docs/*.md` resolves to a file (and heading) of the repository; and no
//! document or source file names things by the design briefs the project started from
//! ("seed" and a number).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

/// README.md's size limit, in bytes (what `wc -c` counts).
const README_MAX_BYTES: usize = 15_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether a file holds only tests (`tests.rs`, `*_tests.rs`).
fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    name == "tests" || name.ends_with("_tests")
}

/// The source without its `#[cfg(test)]` items (a `mod tests;` line, or a braced item up to
/// its closing brace), so settings read only by unit tests are not counted.
fn without_test_items(source: &str) -> String {
    let mut kept = String::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        // Skip further attributes, then the item itself.
        let mut depth = 0i64;
        let mut opened = false;
        for item_line in lines.by_ref() {
            let code = item_line.replace("'{'", "").replace("'}'", "");
            depth += code.matches('{').count() as i64 - code.matches('}').count() as i64;
            opened |= code.contains('{');
            let attribute = item_line.trim_start().starts_with("#[");
            if !attribute && ((opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')))
            {
                break;
            }
        }
    }
    kept
}

/// Every environment variable the server reads: the string literals naming a setting in the
/// code (`src/config.rs` looks each one up by its literal name; the DynamoDB table variables,
/// the LLM presets' key variables, `SWITCHBOARD_CALL_THREADS` and `SWITCHBOARD_LOG_FORMAT`
/// are literals too), outside test code.
fn settings_read_by_the_code() -> BTreeSet<String> {
    let literal = Regex::new(
        r#""((?:SWITCHBOARD|LLM|LIVEKIT|TWILIO|AWS|DYNAMODB)_[A-Z0-9_]+|[A-Z]+_API_KEY)""#,
    )
    .unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut names = BTreeSet::new();
    for file in files.iter().filter(|f| !is_test_file(f)) {
        let code = without_test_items(&read(file));
        for c in literal.captures_iter(&code) {
            names.insert(c[1].to_string());
        }
    }
    names
}

/// Whether `text` names `setting` as a whole word (`AWS_ENDPOINT_URL` is not found inside
/// `AWS_ENDPOINT_URL_DYNAMODB`).
fn names(text: &str, setting: &str) -> bool {
    Regex::new(&format!(r"(^|[^A-Z0-9_]){setting}([^A-Z0-9_]|$)"))
        .unwrap()
        .is_match(text)
}

#[test]
fn every_setting_is_in_env_example_and_the_configuration_page() {
    let settings = settings_read_by_the_code();
    for known in [
        "SWITCHBOARD_ADDR",
        "SWITCHBOARD_CALL_THREADS",
        "SWITCHBOARD_LOG_FORMAT",
        "LLM_MODEL",
        "OPENAI_API_KEY",
        "LIVEKIT_API_SECRET",
        "TWILIO_ACCOUNT_SID",
        "AWS_SESSION_TOKEN",
        "DYNAMODB_TABLE_WEBHOOK_DELIVERIES",
    ] {
        assert!(
            settings.contains(known),
            "the collector missed {known}; found {settings:?}"
        );
    }
    assert!(
        !settings.contains("SWITCHBOARD_TEST_DYNAMODB_ENDPOINT"),
        "settings read only by tests are not server settings"
    );
    let env_example = read(&root().join(".env.example"));
    let configuration = read(&root().join("docs/configuration.md"));
    let missing: Vec<String> = settings
        .iter()
        .flat_map(|s| {
            let mut m = Vec::new();
            if !names(&env_example, s) {
                m.push(format!("{s} is missing from .env.example"));
            }
            if !names(&configuration, s) {
                m.push(format!("{s} is missing from docs/configuration.md"));
            }
            m
        })
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn readme_is_short() {
    let size = read(&root().join("README.md")).len();
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, at most {README_MAX_BYTES}: move detail into docs/"
    );
}

/// README.md and every `docs/*.md`.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

/// The text outside fenced code blocks.
fn prose(markdown: &str) -> String {
    let mut inside = false;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// GitHub's anchors of a document's headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    prose(markdown)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn relative_links_resolve_inside_the_repository() {
    let link = Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let repo = root().canonicalize().unwrap();
    let mut broken = Vec::new();
    for doc in documents() {
        let text = read(&doc);
        for c in link.captures_iter(&prose(&text)) {
            let target = &c[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target, None),
            };
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            let name = format!(
                "{}: {target}",
                doc.strip_prefix(&repo).unwrap_or(&doc).display()
            );
            match file.canonicalize() {
                Ok(resolved) if resolved.starts_with(&repo) => {
                    if let Some(anchor) = anchor {
                        if resolved.is_file()
                            && resolved.extension().is_some_and(|e| e == "md")
                            && !anchors(&read(&resolved)).contains(anchor)
                        {
                            broken.push(format!("{name} (no such heading)"));
                        }
                    }
                }
                Ok(_) => broken.push(format!("{name} (outside the repository)")),
                Err(_) => broken.push(format!("{name} (no such file)")),
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn documents_name_things_for_what_they_are() {
    let brief = Regex::new(r"(?i)\bseed[ _-]?(0\d*|\d{3})\b").unwrap();
    let mut files = documents();
    files.push(root().join(".env.example"));
    files.push(root().join("src/http/openapi.json"));
    // The code too (this file names the pattern it looks for).
    for dir in ["src", "tests", "benches", "fuzz/fuzz_targets"] {
        rust_files(&root().join(dir), &mut files);
    }
    files.retain(|f| !f.ends_with("tests/it/docs.rs"));
    let mut found = Vec::new();
    for file in files {
        for (i, line) in read(&file).lines().enumerate() {
            if brief.is_match(line) {
                found.push(format!("{}:{}: {line}", file.display(), i + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "say what the thing is, not which design brief it came from:\n{}",
        found.join("\n")
    );
}
