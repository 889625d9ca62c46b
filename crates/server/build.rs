//! Embeds every file under `static/` (the demo pages and the JS client) at
//! build time; a missing directory embeds nothing.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut out = String::from("/// Embedded static files: (path relative to static/, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n");
    let mut files = Vec::new();
    collect(&dir, &dir, &mut files);
    files.sort();
    for (rel, abs) in files {
        println!("cargo:rerun-if-changed={abs}");
        let _ = writeln!(out, "    ({rel:?}, include_bytes!({abs:?})),");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("static_files.rs");
    std::fs::write(dest, out).expect("write static_files.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, files);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel.starts_with('.') || rel.ends_with('~') {
                continue;
            }
            files.push((rel, p.to_string_lossy().into_owned()));
        }
    }
}
