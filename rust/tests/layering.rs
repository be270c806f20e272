//! The allowed import directions of the crate (docs/architecture.md): every module of
//! `rust/src` may refer (`crate::...`) only to modules of a lower layer. Test code (`tests.rs`,
//! `#[cfg(test)] mod tests { ... }`) may reach anywhere and is not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layers, lowest first. A module may use the modules of the layers below its own.
const LAYERS: &[&[&str]] = &[
    &[
        "atomic_file",
        "base",
        "error",
        "strings",
        "numbers",
        "pool",
        "partial",
        "lib",
    ],
    &["json"],
    &["compile"],
    &["encode", "machine", "vocab"],
    &["rules"],
    &["matcher"],
    &["tokenizer"],
    &["train", "testing", "bitmask"],
    &["corpus"],
    &["python"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The module a `crate::NAME` path names: lib.rs re-exports the public types.
fn module_of(name: &str) -> String {
    match name {
        "Tokenizer" | "Matcher" | "Encoding" | "Decoded" => "tokenizer".into(),
        "TrainOptions" => "train".into(),
        "SchemaError" | "EncodeError" | "DecodeError" => "error".into(),
        n if n.chars().next().is_some_and(|c| c.is_ascii_uppercase()) => "lib".into(),
        n => n.into(),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("rust/src is readable") {
        let p = e.expect("directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and without inline test modules.
fn product_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_start() == "#[cfg(test)]" {
            match lines.peek() {
                // `mod tests;`: a test file of its own, skipped by name.
                Some(next) if next.trim_end().ends_with(';') => {
                    lines.next();
                    continue;
                }
                // An inline test module runs to the end of the file in this crate.
                _ => break,
            }
        }
        let code = line.split("//").next().unwrap_or("");
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            refs.insert(module_of(&name));
        }
    }
    refs
}

#[test]
fn modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("rust/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "rust/src has the crate's sources");
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under rust/src");
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" {
            continue;
        }
        let module = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer(&module) else {
            bad.push(format!("{}: module `{module}` has no layer", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(f).expect("source is UTF-8");
        for used in crate_refs(&product_code(&text)) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                _ => bad.push(format!(
                    "{}: `{module}` uses `crate::{used}`, not below it",
                    rel.display()
                )),
            }
        }
    }
    assert!(
        bad.is_empty(),
        "import directions broken:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_check_sees_a_wrong_direction() {
    // A machine file that reached up to the facade would be reported.
    let code = product_code("use crate::compile::Graph;\nfn f(t: &crate::Tokenizer) {}\n");
    let refs = crate_refs(&code);
    assert!(refs.contains("tokenizer") && refs.contains("compile"));
    assert!(layer("tokenizer") > layer("machine"));
    // Comments and inline test modules are not product code.
    let code =
        product_code("// crate::tokenizer\n#[cfg(test)]\nmod tests {\n use crate::corpus;\n}\n");
    assert!(crate_refs(&code).is_empty());
}
