//! Hub fixtures the tests write: Parquet files with the schemas pyarrow gives the hub's datasets
//! (strings, lists of strings, int64 class labels, SQuAD-style `answers` structs; Snappy, as
//! pyarrow writes by default), a Hugging Face cache laid out as huggingface_hub writes it, and a
//! mock hub on 127.0.0.1 that answers the two requests huggingface_hub (and hf-hub) make: the
//! revision's file list and a file's `resolve` URL. Shared with flan-cli's end-to-end test.

#![allow(dead_code)]

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One column of a fixture table.
pub enum Col {
    /// `optional binary (STRING)`; `None` is null.
    Str(Vec<Option<String>>),
    /// `list<string>`.
    StrList(Vec<Vec<String>>),
    /// `optional int64`.
    Int(Vec<i64>),
    /// `struct<text: list<string>, answer_start: list<int32>>` (datasets' SQuAD `answers`).
    Answers(Vec<(Vec<String>, Vec<i32>)>),
}

/// Strings as a non-null string column.
pub fn strs<S: AsRef<str>>(values: &[S]) -> Col {
    Col::Str(
        values
            .iter()
            .map(|v| Some(v.as_ref().to_string()))
            .collect(),
    )
}

/// A list column as pyarrow writes it; `leaf` is the element's type, `annotation` its logical
/// type (`(STRING)`) or nothing.
fn list_schema(name: &str, leaf: &str, annotation: &str) -> String {
    format!(
        "optional group {name} (LIST) {{ repeated group list {{ optional {leaf} element {annotation}; }} }}"
    )
}

fn list_levels(lists: &[usize], list_def: i16) -> (Vec<i16>, Vec<i16>) {
    let (mut def, mut rep) = (Vec::new(), Vec::new());
    for &n in lists {
        if n == 0 {
            def.push(list_def - 1);
            rep.push(0);
        }
        for i in 0..n {
            def.push(list_def + 1);
            rep.push(i16::from(i > 0));
        }
    }
    (def, rep)
}

/// Writes `columns` as a one-row-group Parquet file at `path`.
pub fn write_parquet(path: &Path, columns: &[(&str, Col)]) {
    let fields: Vec<String> = columns
        .iter()
        .map(|(name, col)| match col {
            Col::Str(_) => format!("optional binary {name} (STRING);"),
            Col::StrList(_) => list_schema(name, "binary", "(STRING)"),
            Col::Int(_) => format!("optional int64 {name};"),
            Col::Answers(_) => format!(
                "optional group {name} {{ {} {} }}",
                list_schema("text", "binary", "(STRING)"),
                list_schema("answer_start", "int32", "")
            ),
        })
        .collect();
    let schema = Arc::new(
        parse_message_type(&format!("message schema {{ {} }}", fields.join(" "))).unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
    let mut group = writer.next_row_group().unwrap();
    for (_, col) in columns {
        // Each column's leaves in schema order.
        match col {
            Col::Str(values) => {
                let mut w = group.next_column().unwrap().unwrap();
                let present: Vec<ByteArray> = values
                    .iter()
                    .flatten()
                    .map(|s| ByteArray::from(s.as_str()))
                    .collect();
                let def: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
                w.typed::<ByteArrayType>()
                    .write_batch(&present, Some(&def), None)
                    .unwrap();
                w.close().unwrap();
            }
            Col::StrList(lists) => {
                let mut w = group.next_column().unwrap().unwrap();
                let values: Vec<ByteArray> = lists
                    .iter()
                    .flatten()
                    .map(|s| ByteArray::from(s.as_str()))
                    .collect();
                let (def, rep) = list_levels(&lists.iter().map(Vec::len).collect::<Vec<_>>(), 2);
                w.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&def), Some(&rep))
                    .unwrap();
                w.close().unwrap();
            }
            Col::Int(values) => {
                let mut w = group.next_column().unwrap().unwrap();
                let def = vec![1i16; values.len()];
                w.typed::<Int64Type>()
                    .write_batch(values, Some(&def), None)
                    .unwrap();
                w.close().unwrap();
            }
            Col::Answers(rows) => {
                let mut w = group.next_column().unwrap().unwrap();
                let texts: Vec<ByteArray> = rows
                    .iter()
                    .flat_map(|(t, _)| t.iter().map(|s| ByteArray::from(s.as_str())))
                    .collect();
                let (def, rep) =
                    list_levels(&rows.iter().map(|(t, _)| t.len()).collect::<Vec<_>>(), 3);
                w.typed::<ByteArrayType>()
                    .write_batch(&texts, Some(&def), Some(&rep))
                    .unwrap();
                w.close().unwrap();
                let mut w = group.next_column().unwrap().unwrap();
                let starts: Vec<i32> = rows.iter().flat_map(|(_, s)| s.iter().copied()).collect();
                let (def, rep) =
                    list_levels(&rows.iter().map(|(_, s)| s.len()).collect::<Vec<_>>(), 3);
                w.typed::<Int32Type>()
                    .write_batch(&starts, Some(&def), Some(&rep))
                    .unwrap();
                w.close().unwrap();
            }
        }
    }
    group.close().unwrap();
    writer.close().unwrap();
}

/// A dataset repository's files at one revision: repository path and bytes.
#[derive(Clone, Default)]
pub struct RepoFiles {
    /// `org/name`.
    pub id: String,
    /// Branch (`main`, `refs/convert/parquet`).
    pub revision: String,
    /// The commit the branch names (40 hex digits).
    pub commit: String,
    /// Repository path to content.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl RepoFiles {
    /// An empty revision of `id`.
    pub fn new(id: &str, revision: &str, commit_seed: u8) -> Self {
        RepoFiles {
            id: id.into(),
            revision: revision.into(),
            commit: format!("{commit_seed:02x}").repeat(20),
            files: BTreeMap::new(),
        }
    }

    /// Adds a file read from `path`.
    pub fn add_file(&mut self, name: &str, path: &Path) {
        self.files.insert(name.into(), std::fs::read(path).unwrap());
    }

    /// Adds a Parquet file with `columns`.
    pub fn add_parquet(&mut self, name: &str, columns: &[(&str, Col)]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        write_parquet(&path, columns);
        self.add_file(name, &path);
    }

    /// Adds a file with `text`.
    pub fn add_text(&mut self, name: &str, text: &str) {
        self.files.insert(name.into(), text.as_bytes().to_vec());
    }
}

fn etag(bytes: &[u8]) -> String {
    // Blob names are content hashes on the hub; any stable distinct name serves here.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:08x}", bytes.len())
}

/// Writes `repo` into a Hugging Face cache at `cache` as huggingface_hub does: blobs named by
/// their hash, snapshot entries as relative symlinks to them, `refs/<revision>` naming the commit.
pub fn put_in_cache(cache: &Path, repo: &RepoFiles) -> PathBuf {
    let root = cache.join(format!("datasets--{}", repo.id.replace('/', "--")));
    let snapshot = root.join("snapshots").join(&repo.commit);
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    for (name, bytes) in &repo.files {
        let blob = etag(bytes);
        std::fs::write(root.join("blobs").join(&blob), bytes).unwrap();
        let link = snapshot.join(name);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let depth = name.matches('/').count() + 2;
        let target = format!("{}blobs/{blob}", "../".repeat(depth));
        std::os::unix::fs::symlink(target, &link).unwrap();
    }
    let refs = root.join("refs").join(&repo.revision);
    std::fs::create_dir_all(refs.parent().unwrap()).unwrap();
    std::fs::write(refs, &repo.commit).unwrap();
    snapshot
}

/// A mock hub on 127.0.0.1 serving `repos` until dropped (and at most a minute).
pub struct MockHub {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The request lines served, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockHub {
    /// Starts serving.
    pub fn start(repos: Vec<RepoFiles>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !halt.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &repos, &log),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        MockHub {
            endpoint,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The request lines served so far.
    pub fn served(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    head_only: bool,
) {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes());
    if !head_only {
        let _ = stream.write_all(body);
    }
    let _ = stream.flush();
}

fn decode(path: &str) -> String {
    path.replace("%2F", "/").replace("%2f", "/")
}

fn serve(stream: TcpStream, repos: &[RepoFiles], log: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut range = None;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = v.trim().strip_prefix("bytes=").map(str::to_string);
            }
        }
    }
    log.lock().unwrap().push(request.trim().to_string());
    let mut stream = stream;
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = decode(parts.next().unwrap_or("").split('?').next().unwrap_or(""));
    let head_only = method == "HEAD";
    let not_found = |stream: &mut TcpStream, code: &str| {
        respond(
            stream,
            "404 Not Found",
            &[("X-Error-Code".into(), code.into())],
            b"{\"error\": \"not found\"}",
            head_only,
        )
    };
    if let Some(rest) = path.strip_prefix("/api/datasets/") {
        for repo in repos {
            if rest == format!("{}/revision/{}", repo.id, repo.revision) {
                let siblings: Vec<_> = repo
                    .files
                    .keys()
                    .map(|f| serde_json::json!({ "rfilename": f }))
                    .collect();
                let body =
                    serde_json::json!({"id": repo.id, "sha": repo.commit, "siblings": siblings});
                return respond(
                    &mut stream,
                    "200 OK",
                    &[("Content-Type".into(), "application/json".into())],
                    body.to_string().as_bytes(),
                    head_only,
                );
            }
        }
        return not_found(&mut stream, "RevisionNotFound");
    }
    if let Some(rest) = path.strip_prefix("/datasets/") {
        for repo in repos {
            let prefix = format!("{}/resolve/{}/", repo.id, repo.revision);
            let Some(file) = rest.strip_prefix(&prefix) else {
                continue;
            };
            let Some(bytes) = repo.files.get(file) else {
                return not_found(&mut stream, "EntryNotFound");
            };
            let total = bytes.len();
            let mut headers = vec![
                ("ETag".to_string(), format!("\"{}\"", etag(bytes))),
                ("X-Repo-Commit".to_string(), repo.commit.clone()),
            ];
            let (start, end) = match range.as_deref().and_then(|r| r.split_once('-')) {
                Some((a, b)) => {
                    let a: usize = a.parse().unwrap_or(0);
                    let b: usize = b.parse().unwrap_or(total.saturating_sub(1));
                    (a.min(total), (b + 1).min(total))
                }
                None => (0, total),
            };
            if range.is_some() {
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {start}-{}/{total}", end.saturating_sub(1)),
                ));
                return respond(
                    &mut stream,
                    "206 Partial Content",
                    &headers,
                    &bytes[start..end],
                    head_only,
                );
            }
            return respond(&mut stream, "200 OK", &headers, bytes, head_only);
        }
    }
    not_found(&mut stream, "RepoNotFound")
}
