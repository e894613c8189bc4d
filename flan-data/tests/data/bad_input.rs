//! Bad input: each a clear error naming file and line, or a counted skip in lenient mode.

use flan_data::source::{read_cot_tsv, read_gsm8k_jsonl, read_jsonl, read_niv2_task};
use flan_data::{Error, MixtureSpec, Strictness, TemplateLibrary};
use std::path::Path;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn parse_location(err: &Error) -> (String, usize) {
    match err {
        Error::Parse { file, line, .. } => (
            file.file_name().unwrap().to_string_lossy().into_owned(),
            *line,
        ),
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn truncated_tsv_line_is_an_error_or_a_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "cot.tsv", b"q1\ta1\tr1\nq2\ta2\nq3\ta3\tr3\n");
    let err = read_cot_tsv(&path, "t", Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("cot.tsv".into(), 2));
    let msg = err.to_string();
    assert!(
        msg.contains("cot.tsv:2:")
            && msg.contains("found 2 field(s)")
            && msg.contains("question, answer, rationale"),
        "{msg}"
    );

    let lenient = read_cot_tsv(&path, "t", Strictness::Lenient).unwrap();
    assert_eq!(lenient.examples.len(), 2);
    assert_eq!(lenient.skipped.count, 1);
    assert!(lenient.skipped.reasons[0].contains("cot.tsv:2:"));
    assert_eq!(lenient.examples[1].provenance.line, 3);
}

#[test]
fn niv2_file_with_a_missing_field() {
    let dir = tempfile::tempdir().unwrap();
    let no_instances = write(
        dir.path(),
        "task1_x.json",
        br#"{"Definition": ["Do it."], "Positive Examples": []}"#,
    );
    let msg = read_niv2_task(&no_instances, Strictness::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("task1_x.json:1:") && msg.contains("missing field `Instances`"),
        "{msg}"
    );

    let text = "{\n  \"Definition\": [\"Do it.\"],\n  \"Positive Examples\": [],\n  \"Instances\": [\n    {\"id\": \"a\", \"input\": \"x\", \"output\": [\"y\"]},\n    {\"id\": \"b\", \"input\": \"x2\"}\n  ]\n}\n";
    let path = write(dir.path(), "task2_y.json", text.as_bytes());
    let err = read_niv2_task(&path, Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("task2_y.json".into(), 6));
    assert!(err.to_string().contains("missing field `output`"), "{err}");
    let lenient = read_niv2_task(&path, Strictness::Lenient).unwrap();
    assert_eq!(
        (lenient.loaded.examples.len(), lenient.loaded.skipped.count),
        (1, 1)
    );
}

#[test]
fn invalid_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = write(
        dir.path(),
        "bad.tsv",
        b"q1\ta1\tr1\nq2\ta2\tr2\nq\xff3\ta3\tr3\n",
    );
    let err = read_cot_tsv(&tsv, "t", Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("bad.tsv".into(), 3));
    assert!(err.to_string().contains("invalid UTF-8"), "{err}");

    let jsonl = write(
        dir.path(),
        "bad.jsonl",
        b"{\"inputs\": \"a\", \"targets\": \"b\"}\n{\"inputs\": \"\xc3\", \"targets\": \"b\"}\n",
    );
    let err = read_jsonl(&jsonl, "t", Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("bad.jsonl".into(), 2));

    let json = write(
        dir.path(),
        "task3_z.json",
        b"{\n\"Definition\": [\"\xff\"]\n}",
    );
    let err = read_niv2_task(&json, Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("task3_z.json".into(), 2));
}

#[test]
fn empty_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.tsv", b"");
    let msg = read_cot_tsv(&empty, "t", Strictness::Lenient)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("empty.tsv:1:") && msg.contains("the file is empty"),
        "{msg}"
    );
    let blank = write(dir.path(), "blank.jsonl", b"\n\n");
    assert!(read_jsonl(&blank, "t", Strictness::Strict)
        .unwrap_err()
        .to_string()
        .contains("blank.jsonl:1: the file is empty"));
    let json = write(dir.path(), "task4.json", b"  ");
    assert!(read_niv2_task(&json, Strictness::Strict)
        .unwrap_err()
        .to_string()
        .contains("the file is empty"));
    let gsm = write(dir.path(), "gsm.jsonl", b"");
    assert!(read_gsm8k_jsonl(&gsm, "t", true, Strictness::Strict).is_err());
}

#[test]
fn jsonl_and_gsm8k_record_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "opts.jsonl",
        br#"{"inputs": "2+2?", "targets": "4", "options": ["3", "4"]}
{"inputs": "1+1?", "targets": "2", "options": ["3", "4"]}
{"inputs": "x", "target": "y"}
"#,
    );
    let err = read_jsonl(&path, "t", Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("opts.jsonl".into(), 2));
    assert!(err.to_string().contains("not one of the options"), "{err}");
    let lenient = read_jsonl(&path, "t", Strictness::Lenient).unwrap();
    assert_eq!((lenient.examples.len(), lenient.skipped.count), (1, 2));
    assert!(
        lenient.skipped.reasons[1].contains("opts.jsonl:3:")
            && lenient.skipped.reasons[1].contains("missing field `targets`")
    );
    // A misspelt field is not what fails the record (unknown fields are ignored and counted);
    // the required field it was meant to be is missing.
    let extra = write(
        dir.path(),
        "extra.jsonl",
        br#"{"inputs": "a", "targets": "b", "task_source": "CoT", "id": 1}
{"inputs": "c", "targets": "d", "id": 2}
"#,
    );
    let read = read_jsonl(&extra, "t", Strictness::Strict).unwrap();
    assert_eq!(read.examples.len(), 2);
    assert_eq!(
        read.ignored.into_iter().collect::<Vec<_>>(),
        [("id".to_string(), 2), ("task_source".to_string(), 1)]
    );
    let mistyped = write(
        dir.path(),
        "mistyped.jsonl",
        br#"{"inputs": "a", "targets": 4, "x": 1}"#,
    );
    let err = read_jsonl(&mistyped, "t", Strictness::Strict).unwrap_err();
    assert!(
        err.to_string()
            .contains("mistyped.jsonl:1: invalid type: integer `4`"),
        "{err}"
    );

    let gsm = write(
        dir.path(),
        "gsm.jsonl",
        br#"{"question": "q", "answer": "no marker here"}"#,
    );
    let err = read_gsm8k_jsonl(&gsm, "t", true, Strictness::Strict).unwrap_err();
    assert_eq!(parse_location(&err), ("gsm.jsonl".into(), 1));
    assert!(err.to_string().contains("####"));
}

#[test]
fn configs_reject_unknown_fields_and_bad_templates() {
    let err = MixtureSpec::from_toml("sed = 1\ntasks = []", "mix.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mix.toml") && err.contains("unknown field `sed`"),
        "{err}"
    );
    let err = TemplateLibrary::from_toml(
        "[[options.styles]]\nlabel = \"-\"\n[[families]]\nname = \"x\"\n[[families.templates]]\ninputs = \"{question}\"\ntargets = \"{targets}\"\n",
        "mine.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("mine.toml") && err.contains("{question}"),
        "{err}"
    );
}

#[test]
fn a_family_that_needs_rationales_rejects_examples_without_one() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "plain.jsonl",
        b"{\"inputs\": \"a\", \"targets\": \"b\"}\n",
    );
    let spec = MixtureSpec::from_toml(
        "[[tasks]]\nformat = \"jsonl\"\npath = \"plain.jsonl\"\nsubmixture = \"cot\"\nfamily = \"cot\"\n",
        "spec",
    )
    .unwrap();
    let msg = flan_data::Mixture::from_spec(&spec, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("plain.jsonl:1:") && msg.contains("need a rationale"),
        "{msg}"
    );
}

/// Every reader takes a file that starts with a UTF-8 byte-order mark (as editors and
/// spreadsheet exports write them) exactly as the same file without it: same records, same lines.
#[test]
fn a_byte_order_mark_is_accepted_by_every_reader() {
    use flan_data::source::{read_niv2_split, Loaded};
    let data = crate::shared_data();
    let dir = tempfile::tempdir().unwrap();
    let head = |path: &Path, lines: usize| -> Vec<u8> {
        let text = std::fs::read_to_string(path).unwrap();
        let mut out: String = text.lines().take(lines).collect::<Vec<_>>().join("\n");
        out.push('\n');
        out.into_bytes()
    };
    let with_and_without = |name: &str, body: Vec<u8>| {
        let plain = write(dir.path(), &format!("plain-{name}"), &body);
        let mut marked = b"\xEF\xBB\xBF".to_vec();
        marked.extend_from_slice(&body);
        let marked = write(dir.path(), &format!("bom-{name}"), &marked);
        (plain, marked)
    };
    let same = |what: &str, a: Loaded, b: Loaded| {
        assert!(!a.examples.is_empty(), "{what}: the test needs records");
        assert_eq!(b.skipped.count, 0, "{what}: {:?}", b.skipped.reasons);
        let key = |l: &Loaded| -> Vec<(String, String, usize)> {
            l.examples
                .iter()
                .map(|e| (e.inputs.clone(), e.targets.clone(), e.provenance.line))
                .collect()
        };
        assert_eq!(key(&a), key(&b), "{what}");
    };

    let (p, m) = with_and_without("cot.tsv", head(&data.join("flan-cot/aqua_train.tsv"), 5));
    same(
        "cot tsv",
        read_cot_tsv(&p, "t", Strictness::Strict).unwrap(),
        read_cot_tsv(&m, "t", Strictness::Strict).unwrap(),
    );
    let (p, m) = with_and_without("gsm8k.jsonl", head(&data.join("gsm8k/test.jsonl"), 5));
    same(
        "gsm8k",
        read_gsm8k_jsonl(&p, "t", true, Strictness::Strict).unwrap(),
        read_gsm8k_jsonl(&m, "t", true, Strictness::Strict).unwrap(),
    );
    let jsonl =
        b"{\"inputs\": \"a\", \"targets\": \"b\"}\n{\"inputs\": \"c\", \"targets\": \"d\"}\n";
    let (p, m) = with_and_without("x.jsonl", jsonl.to_vec());
    same(
        "jsonl",
        read_jsonl(&p, "t", Strictness::Strict).unwrap(),
        read_jsonl(&m, "t", Strictness::Strict).unwrap(),
    );
    let task = std::fs::read(data.join("niv2/tasks/task1149_item_check_edible.json")).unwrap();
    let (p, m) = with_and_without("task1149_item_check_edible.json", task);
    let (a, b) = (
        read_niv2_task(&p, Strictness::Strict).unwrap(),
        read_niv2_task(&m, Strictness::Strict).unwrap(),
    );
    assert_eq!(a.definition, b.definition);
    same("niv2", a.loaded, b.loaded);
    let (p, m) = with_and_without(
        "split.txt",
        head(&data.join("niv2/splits/default/train_tasks.txt"), 4),
    );
    let split = read_niv2_split(&p).unwrap();
    assert_eq!(split.len(), 4);
    assert_eq!(read_niv2_split(&m).unwrap(), split);
    let spec =
        "seed = 3\n[[tasks]]\nformat = \"jsonl\"\npath = \"x.jsonl\"\nsubmixture = \"flan\"\n";
    let (p, m) = with_and_without("spec.toml", spec.as_bytes().to_vec());
    let spec = MixtureSpec::from_file(&p).unwrap();
    assert_eq!(spec.seed, 3);
    assert_eq!(MixtureSpec::from_file(&m).unwrap(), spec);
}
