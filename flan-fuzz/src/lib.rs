//! `flan-fuzz`: the harness behind the `fuzz` test target of each crate (`flan-data`, `flan-eval`,
//! `flan-train`, `flan-cli`), on stable Rust with proptest.
//!
//! The promise being tested: no input reaches a panic. Every reader of a user-supplied file,
//! every config and every command must answer any bytes with a result or an error that names the
//! file; a panic (an index out of bounds, an `unwrap` on user data, an overflow in a debug build)
//! fails the target, and proptest shrinks the input to a small one that is printed with the
//! failure. A fixed panic keeps its input as a regression test beside the target.
//!
//! Inputs come from two generators:
//! - [`arbitrary_bytes`]: any bytes, which mostly exercise the first checks of a parser;
//! - [`mutations_of`]: real files (from `../shared/data`, read in place, never copied) or small
//!   valid documents, changed by a few structure-aware edits (a byte flipped, a JSON or TSV token
//!   or a byte-order mark inserted, a span deleted or duplicated, the file cut short), which
//!   reach the code behind the first checks.
//!
//! How many inputs each target runs is set by `FLAN_FUZZ_CASES` (default 64, so `cargo test`
//! stays quick; `cargo xtask fuzz`, which CI runs, sets more); `FLAN_FUZZ_SEED` picks the
//! inputs (default 0; `random` for fresh ones) and replays a run. Each target prints
//! `fuzz <target>: <n> inputs (seed <s>)` on stderr.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

thread_local! {
    /// Whether this thread is running a target (its panics are expected and shrunk, not
    /// printed one by one).
    static FUZZING: Cell<bool> = const { Cell::new(false) };
    /// Where the last panic of this thread's target happened, for the failure message.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once, a panic hook that records (instead of printing) the panics of targets while
/// they run, and passes every other panic to the previous hook.
fn quiet_while_fuzzing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if FUZZING.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{info} (at {at})")));
            } else {
                previous(info);
            }
        }));
    });
}

/// The variable with the number of inputs per target.
pub const CASES_VAR: &str = "FLAN_FUZZ_CASES";
/// The variable that fixes the seed of every target (to replay a run).
pub const SEED_VAR: &str = "FLAN_FUZZ_SEED";
/// The variable naming a file each input is written to (Debug form) before it runs.
pub const TRACE_VAR: &str = "FLAN_FUZZ_TRACE";

/// Inputs per target: `FLAN_FUZZ_CASES`, or 64.
pub fn cases() -> u32 {
    std::env::var(CASES_VAR)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &u32| n > 0)
        .unwrap_or(64)
}

/// `../shared/data` of the checkout (the real data sets beside the repository).
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// The first `max_lines` lines of a text file, as bytes (a seed small enough to mutate fast).
pub fn head(path: &Path, max_lines: usize) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("fuzz seed {}: {e}", path.display()));
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n').take(max_lines) {
        out.extend_from_slice(line);
    }
    out
}

/// Any bytes, up to `max_len`.
pub fn arbitrary_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max_len)
}

/// Tokens that matter to the formats we read: JSON and TSV structure, line ends, a byte-order
/// mark, invalid UTF-8, Python's non-JSON numbers, numbers at the edges, the markers of BBH
/// prompts and GSM8K answers, a long run, a NUL.
const DICTIONARY: &[&[u8]] = &[
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"\"",
    b"\\",
    b"\\n",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"\"",
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1e999",
    b"-0.0",
    b"18446744073709551616",
    b"NaN",
    b"-Infinity",
    b"\xEF\xBB\xBF",
    b"\xFF",
    b"\xC3",
    b"\xE2\x82",
    b"\0",
    b"####",
    b"#### 5",
    b"-----",
    b"Q: ",
    b"A: ",
    b"So the answer is ",
    b"Let's think step by step.",
    b"(A)",
    b"<<1+1=2>>",
    b"\"id\": ",
    b"\"inputs\": \"x\"",
    b"\"targets\": \"y\"",
    b"\"prediction\": \"\"",
    b"\"predictions\": []",
    b"\"Instances\": []",
    b"[[tasks]]",
    b" = ",
    b"=",
    b"*",
    b"..",
];

/// A position in a document of any length, as a fraction of it: `Pos(0)` is the start,
/// `Pos(u32::MAX)` the end. Shrinks towards the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos(pub u32);

impl Pos {
    /// The position in `0..=len`.
    pub fn of(self, len: usize) -> usize {
        (((len as u64 + 1) * self.0 as u64) >> 32) as usize
    }

    /// An index in `0..len` (`len` > 0).
    fn within(self, len: usize) -> usize {
        self.of(len).min(len - 1)
    }
}

fn pos() -> impl Strategy<Value = Pos> {
    any::<u32>().prop_map(Pos)
}

/// One edit of a seed document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Replace the byte at a position.
    Flip(Pos, u8),
    /// Insert a dictionary token (the second position picks it) at a position.
    Insert(Pos, Pos),
    /// Insert a run of one byte (long fields, long lines).
    Run(Pos, u8, u16),
    /// Delete up to `len` bytes from a position.
    Delete(Pos, u16),
    /// Copy a span to another position (a duplicated line, a repeated key).
    Duplicate(Pos, u16, Pos),
    /// Cut the document at a position.
    Truncate(Pos),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (pos(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        4 => (pos(), pos()).prop_map(|(i, t)| Mutation::Insert(i, t)),
        1 => (pos(), any::<u8>(), 1u16..3000).prop_map(|(i, b, n)| Mutation::Run(i, b, n)),
        2 => (pos(), 1u16..200).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (pos(), 1u16..200, pos()).prop_map(|(i, n, j)| Mutation::Duplicate(i, n, j)),
        1 => pos().prop_map(Mutation::Truncate),
    ]
}

/// Applies `edits` to a copy of `seed`.
pub fn apply(seed: &[u8], edits: &[Mutation]) -> Vec<u8> {
    let mut doc = seed.to_vec();
    for edit in edits {
        // Positions are taken in 0..=len, so that an edit may land at the end.
        let at = |i: &Pos, len: usize| i.of(len);
        match edit {
            Mutation::Flip(i, b) => {
                if !doc.is_empty() {
                    let p = i.within(doc.len());
                    doc[p] = *b;
                }
            }
            Mutation::Insert(i, t) => {
                let p = at(i, doc.len());
                let token = DICTIONARY[t.within(DICTIONARY.len())];
                doc.splice(p..p, token.iter().copied());
            }
            Mutation::Run(i, b, n) => {
                let p = at(i, doc.len());
                doc.splice(p..p, std::iter::repeat_n(*b, *n as usize));
            }
            Mutation::Delete(i, n) => {
                let p = at(i, doc.len());
                let end = (p + *n as usize).min(doc.len());
                doc.drain(p..end);
            }
            Mutation::Duplicate(i, n, j) => {
                let p = at(i, doc.len());
                let end = (p + *n as usize).min(doc.len());
                let span: Vec<u8> = doc[p..end].to_vec();
                let q = at(j, doc.len());
                doc.splice(q..q, span);
            }
            Mutation::Truncate(i) => {
                let p = at(i, doc.len());
                doc.truncate(p);
            }
        }
    }
    doc
}

/// A seed from `seeds` with 0 to 8 edits: mostly near-valid documents.
pub fn mutations_of(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "mutations_of needs at least one seed");
    (pos(), proptest::collection::vec(mutation(), 0..=8))
        .prop_map(move |(which, edits)| apply(&seeds[which.within(seeds.len())], &edits))
}

/// Mutated seeds three times in four, arbitrary bytes otherwise.
pub fn documents(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => mutations_of(seeds), 1 => arbitrary_bytes(2048)]
}

/// The seed of a run: `FLAN_FUZZ_SEED` (a number, or `random` for a fresh one, printed so a
/// failure can be replayed); unset, 0, so that `cargo test` runs the same inputs every time.
/// `cargo xtask fuzz` seeds from the commit, so each commit explores new inputs reproducibly.
fn seed() -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(v) if v.trim() == "random" => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            // splitmix64 of the clock and the process id.
            let mut z = nanos ^ (u64::from(std::process::id()) << 32);
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR}={v:?}: expected a number or `random`")),
        Err(_) => 0,
    }
}

/// Runs `check` on [`cases`] inputs of `strategy`. A panic in `check` (or an `Err`, for a
/// property that does not hold) fails the target with the shrunk input; the count of inputs run
/// is printed and returned.
pub fn fuzz<S: Strategy>(
    target: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), String>,
) -> u64
where
    S::Value: std::fmt::Debug,
{
    fuzz_cases(target, cases(), strategy, check)
}

/// [`fuzz`] with `n` inputs, for targets whose inputs are costly (a process per input): they
/// take a fraction of [`cases`].
pub fn fuzz_cases<S: Strategy>(
    target: &str,
    n: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), String>,
) -> u64
where
    S::Value: std::fmt::Debug,
{
    let seed = seed();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    // The target's name changes the stream, so targets with one seed do not share inputs.
    for (i, b) in target.bytes().enumerate() {
        key[8 + i % 24] ^= b;
    }
    let config = Config {
        cases: n,
        failure_persistence: None,
        // Inputs are files; shrinking a big document takes many steps.
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let count = Cell::new(0u64);
    let runs = Cell::new(0u64);
    quiet_while_fuzzing();
    FUZZING.with(|f| f.set(true));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    // An abort (a stack overflow) cannot be caught or shrunk: with FLAN_FUZZ_TRACE=FILE each
    // input is written there before it runs, so the last one is the culprit.
    let trace = std::env::var_os(TRACE_VAR).map(PathBuf::from);
    let result = runner.run(&strategy, |value| {
        if let Some(trace) = &trace {
            let _ = std::fs::write(trace, format!("{value:?}"));
        }
        runs.set(runs.get() + 1);
        // Inputs of the run proper; those tried while shrinking a failure are not counted.
        if runs.get() <= u64::from(n) {
            count.set(count.get() + 1);
        }
        check(value).map_err(TestCaseError::fail)
    });
    FUZZING.with(|f| f.set(false));
    eprintln!(
        "fuzz {target}: {} inputs (seed {seed}; {SEED_VAR}={seed} replays it)",
        count.get()
    );
    if let Err(e) = result {
        let panic = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .map(|p| format!("\nlast panic: {p}"))
            .unwrap_or_default();
        panic!("fuzz {target} (seed {seed}): {e}{panic}");
    }
    count.get()
}

/// A scratch file that each input is written to, for readers that take a path.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh scratch directory.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` to `name` in the scratch directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("writing a scratch file");
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

/// The property every reader owes its user: an error about a file names it. `Ok` when `text`
/// (an error message) mentions `file`'s name.
pub fn names_file(text: &str, file: &Path) -> Result<(), String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if text.contains(&name) {
        Ok(())
    } else {
        Err(format!("the error does not name {name}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_stay_in_bounds_and_change_the_document() {
        let seed = b"{\"a\": 1}\n";
        let (start, middle, end) = (Pos(0), Pos(u32::MAX / 2), Pos(u32::MAX));
        assert_eq!((start.of(9), middle.of(9), end.of(9)), (0, 4, 9));
        let all = [
            Mutation::Flip(end, b'x'),
            Mutation::Insert(middle, start),
            Mutation::Run(end, b'z', 3),
            Mutation::Delete(middle, 100),
            Mutation::Duplicate(start, 4, end),
            Mutation::Truncate(middle),
        ];
        for edit in &all {
            let out = apply(seed, std::slice::from_ref(edit));
            assert_ne!(out, seed, "{edit:?}");
        }
        // On an empty document the edits that need bytes do nothing and the inserts insert.
        let removals = [
            Mutation::Flip(end, b'x'),
            Mutation::Delete(start, 5),
            Mutation::Duplicate(start, 4, end),
            Mutation::Truncate(end),
        ];
        assert_eq!(apply(b"", &removals), b"");
        assert_eq!(apply(b"", &all), b"\tz");
        assert_eq!(apply(seed, &[]), seed);
    }

    #[test]
    fn the_count_is_the_number_of_inputs_run() {
        let n = fuzz("self-test", arbitrary_bytes(8), |_| Ok(()));
        assert_eq!(n, cases() as u64);
    }

    #[test]
    #[should_panic(expected = "fuzz failing")]
    fn a_panicking_check_fails_the_target() {
        fuzz("failing", arbitrary_bytes(8), |b| {
            assert!(b.len() < 4, "too long");
            Ok(())
        });
    }
}
