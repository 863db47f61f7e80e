//! Reading a bundle: an `apiproxy/` or `sharedflowbundle/` directory (or
//! the directory holding one), or the revision zip Apigee exports. Only the
//! XML files are read (the descriptor, `proxies/`, `targets/`, `policies/`,
//! `sharedflows/`); resources (JavaScript, Java...) are not needed.
//!
//! Every size is bounded: a bundle is at most [`MAX_FILES`] XML files of at
//! most [`MAX_FILE_BYTES`] each, so a zip bomb ends with one line, not with
//! the memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

pub const MAX_FILES: usize = 5000;
pub const MAX_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `apiproxy/`
    Proxy,
    /// `sharedflowbundle/`
    SharedFlow,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Proxy => "apiproxy",
            Kind::SharedFlow => "sharedflowbundle",
        }
    }
}

/// A bundle's XML files, by their path under `apiproxy/` or
/// `sharedflowbundle/` (`proxies/default.xml`, `policies/P.xml`...).
#[derive(Debug, Clone)]
pub struct Bundle {
    pub kind: Kind,
    /// The input as the user gave it, for messages.
    pub source: String,
    pub files: BTreeMap<String, String>,
}

impl Bundle {
    /// The XML files directly under `dir/` (`policies`, `proxies`...), by
    /// their file name.
    pub fn files_in<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.files.iter().filter_map(move |(path, text)| {
            let rest = path.strip_prefix(dir)?.strip_prefix('/')?;
            (!rest.contains('/')).then_some((rest, text.as_str()))
        })
    }

    /// The descriptor: the one XML file at the top.
    pub fn descriptor(&self) -> Option<(&str, &str)> {
        self.files
            .iter()
            .find(|(path, _)| !path.contains('/'))
            .map(|(p, t)| (p.as_str(), t.as_str()))
    }
}

/// Reads the bundle at `path` (a directory or a zip).
pub fn read(path: &Path) -> Result<Bundle, String> {
    let source = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {source}: {e}"))?;
    if meta.is_dir() {
        return read_dir(path, source);
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {source}: {e}"))?;
    if !bytes.starts_with(b"PK\x03\x04") && !bytes.starts_with(b"PK\x05\x06") {
        return Err(format!(
            "{source} is not an Apigee bundle: neither a directory nor a zip"
        ));
    }
    read_zip(&bytes, source)
}

fn read_dir(path: &Path, source: String) -> Result<Bundle, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (kind, root) = if name == "apiproxy" {
        (Kind::Proxy, path.to_path_buf())
    } else if name == "sharedflowbundle" {
        (Kind::SharedFlow, path.to_path_buf())
    } else if path.join("apiproxy").is_dir() {
        (Kind::Proxy, path.join("apiproxy"))
    } else if path.join("sharedflowbundle").is_dir() {
        (Kind::SharedFlow, path.join("sharedflowbundle"))
    } else {
        return Err(format!(
            "{source} is not an Apigee bundle: no apiproxy/ or sharedflowbundle/ directory in it"
        ));
    };
    let mut files = BTreeMap::new();
    collect(&root, "", &mut files, &source)?;
    Ok(Bundle {
        kind,
        source,
        files,
    })
}

/// The XML files under `dir`, two levels deep at most (the descriptor, then
/// `policies/*.xml` and the like).
fn collect(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, String>,
    source: &str,
) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            if prefix.is_empty() {
                collect(&path, &format!("{relative}/"), files, source)?;
            }
        } else if name.ends_with(".xml") {
            if files.len() >= MAX_FILES {
                return Err(format!("{source}: more than {MAX_FILES} XML files"));
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if size > MAX_FILE_BYTES {
                return Err(format!(
                    "{source}: {relative} is larger than {MAX_FILE_BYTES} bytes"
                ));
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            files.insert(relative, text);
        }
    }
    Ok(())
}

fn read_zip(bytes: &[u8], source: String) -> Result<Bundle, String> {
    let broken = |e: zip::result::ZipError| format!("{source} is not a readable zip: {e}");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(broken)?;
    let mut kind = None;
    let mut files = BTreeMap::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(broken)?;
        if entry.is_dir() {
            continue;
        }
        let Some(path) = entry.enclosed_name() else {
            return Err(format!(
                "{source} is not a readable zip: an entry's path leaves the archive"
            ));
        };
        let path = path.to_string_lossy().replace('\\', "/");
        let Some((top, rest)) = path.split_once('/') else {
            continue;
        };
        let this = match top {
            "apiproxy" => Kind::Proxy,
            "sharedflowbundle" => Kind::SharedFlow,
            _ => continue,
        };
        if kind.is_some_and(|k| k != this) {
            return Err(format!(
                "{source} holds both apiproxy/ and sharedflowbundle/: import them one at a time"
            ));
        }
        kind = Some(this);
        if !rest.ends_with(".xml") || rest.matches('/').count() > 1 {
            continue;
        }
        if files.len() >= MAX_FILES {
            return Err(format!("{source}: more than {MAX_FILES} XML files"));
        }
        let mut text = String::new();
        let read = (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("{source}: cannot read {path} in the zip: {e}"))?;
        if read as u64 > MAX_FILE_BYTES {
            return Err(format!(
                "{source}: {path} is larger than {MAX_FILE_BYTES} bytes"
            ));
        }
        files.insert(rest.to_string(), text);
    }
    let Some(kind) = kind else {
        return Err(format!(
            "{source} is not an Apigee bundle: the zip has no apiproxy/ or sharedflowbundle/ directory"
        ));
    };
    Ok(Bundle {
        kind,
        source,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut out);
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            for (name, text) in entries {
                w.start_file(*name, options).unwrap();
                w.write_all(text.as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }
        out.into_inner()
    }

    #[test]
    fn reads_the_xml_of_a_zip_export() {
        let bytes = zip_of(&[
            ("apiproxy/p.xml", "<APIProxy name=\"p\"/>"),
            ("apiproxy/proxies/default.xml", "<ProxyEndpoint/>"),
            ("apiproxy/resources/jsc/a.js", "x"),
        ]);
        let b = read_zip(&bytes, "p.zip".into()).unwrap();
        assert_eq!(b.kind, Kind::Proxy);
        assert_eq!(
            b.files.keys().collect::<Vec<_>>(),
            ["p.xml", "proxies/default.xml"]
        );
        assert_eq!(b.descriptor().unwrap().0, "p.xml");
        assert_eq!(b.files_in("proxies").count(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_bundle() {
        let e = read_zip(&zip_of(&[("other/x.xml", "<a/>")]), "x.zip".into()).unwrap_err();
        assert!(e.contains("no apiproxy/ or sharedflowbundle/"), "{e}");
        let e = read_zip(b"PK\x03\x04garbage", "bad.zip".into()).unwrap_err();
        assert!(e.starts_with("bad.zip is not a readable zip"), "{e}");
        let dir = std::env::temp_dir().join(format!("oauthv2info-nb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read(&dir).unwrap_err();
        assert!(e.contains("no apiproxy/ or sharedflowbundle/"), "{e}");
        let file = dir.join("f.txt");
        std::fs::write(&file, "hello").unwrap();
        let e = read(&file).unwrap_err();
        assert!(e.contains("neither a directory nor a zip"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
