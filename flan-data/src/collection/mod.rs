//! The published Flan 2022 collection as a task source (`format = "flan_collection"`).
//!
//! The collection is tens of millions of already-templated examples (`inputs`, `targets`,
//! `task_source`, `task_name`, `template_type`; some copies prefix the last three with `_`) in
//! JSONL, JSONL.gz or Parquet files. It is far larger than memory, so it is never loaded: one
//! indexing pass ([`index`]) counts rows per (source, task, template type), cached by file path,
//! size and modification time; the mixture then treats each submixture of the collection as one
//! entry ([`CollectionPart`]) whose rate is Σ min(cap, Nₜ) over its tasks, and streams its rows.
//!
//! Within a part, rows are read from its files in a seeded interleaving (a file is picked with
//! probability proportional to its unread rows, among a bounded window of open files), and a
//! row of task t is kept with probability min(cap, Nₜ)/Nₜ, decided by a hash of (seed, epoch,
//! file, row). Kept rows thus arrive in the examples-proportional-with-caps proportions without
//! any per-example state; the stream's only state is the row reached in each file and the epoch,
//! which the mixture cursor stores. Examples are used as given: no templating.

pub mod index;
mod part;
mod reader;
mod row;

pub use index::{index_files, CollectionIndex, FileIndex, TaskCount};
pub use part::{load_parts, CollectionPart, PartCursor, PartFileRow, PartState};
pub use reader::{collection_files, Encoding, RowReader};
pub use row::{CollectionRow, RowKey};

use serde::{Deserialize, Serialize};

/// How the collection templated an example: zero-/few-shot, with/without answer options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateType {
    /// Zero-shot, options shown.
    ZsOpt,
    /// Zero-shot, no options.
    ZsNoopt,
    /// Few-shot, options shown.
    FsOpt,
    /// Few-shot, no options.
    FsNoopt,
}

impl TemplateType {
    /// Every template type, in a fixed order.
    pub const ALL: [TemplateType; 4] = [
        TemplateType::ZsOpt,
        TemplateType::ZsNoopt,
        TemplateType::FsOpt,
        TemplateType::FsNoopt,
    ];

    /// The collection's spelling (`zs_opt`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TemplateType::ZsOpt => "zs_opt",
            TemplateType::ZsNoopt => "zs_noopt",
            TemplateType::FsOpt => "fs_opt",
            TemplateType::FsNoopt => "fs_noopt",
        }
    }

    /// Parses the collection's spelling.
    pub fn parse(text: &str) -> Option<TemplateType> {
        Self::ALL.into_iter().find(|t| t.name() == text)
    }

    /// The template type of a rendering of ours: inversions are zero-shot renderings.
    pub fn of_rendering(form: crate::render::Form, with_options: bool) -> TemplateType {
        match (form == crate::render::Form::FewShot, with_options) {
            (false, true) => TemplateType::ZsOpt,
            (false, false) => TemplateType::ZsNoopt,
            (true, true) => TemplateType::FsOpt,
            (true, false) => TemplateType::FsNoopt,
        }
    }
}

/// The collection's `task_source` values, each with the submixture it belongs to (the
/// paper's names, then the spellings other copies use).
const SOURCES: [(&str, &str); 5] = [
    ("Flan2021", "flan"),
    ("T0", "t0"),
    ("NIv2", "niv2"),
    ("CoT", "cot"),
    ("Dialog", "dialog"),
];

/// The submixture of a `task_source` value: Flan2021 (Muffin) → flan, T0 (T0-SF) → t0, NIv2 →
/// niv2, CoT → cot, Dialog → dialog, compared without case; any other value names a submixture
/// of the spec directly, when one has that name.
pub fn submixture_of_source<'a>(
    source: &str,
    submixtures: &'a std::collections::BTreeMap<String, crate::spec::Submixture>,
) -> Option<&'a str> {
    let lower = source.to_ascii_lowercase();
    let known = match lower.as_str() {
        "flan2021" | "muffin" | "flan" => Some("flan"),
        "t0" | "t0-sf" | "t0sf" => Some("t0"),
        "niv2" | "natinst_v2" => Some("niv2"),
        "cot" => Some("cot"),
        "dialog" => Some("dialog"),
        _ => None,
    };
    let name = known.unwrap_or(source);
    submixtures.get_key_value(name).map(|(k, _)| k.as_str())
}

/// The `task_source` an export writes for a submixture: the collection's name for the five
/// Flan submixtures, the submixture's own name otherwise (read back as that submixture).
pub fn source_of_submixture(submixture: &str) -> &str {
    SOURCES
        .iter()
        .find(|(_, sub)| *sub == submixture)
        .map_or(submixture, |(source, _)| source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_map_to_submixtures_and_back() {
        let subs = crate::spec::flan2022_submixtures();
        for (source, sub) in SOURCES {
            assert_eq!(submixture_of_source(source, &subs), Some(sub));
            assert_eq!(source_of_submixture(sub), source);
        }
        assert_eq!(submixture_of_source("Muffin", &subs), Some("flan"));
        assert_eq!(submixture_of_source("T0-SF", &subs), Some("t0"));
        assert_eq!(submixture_of_source("niv2", &subs), Some("niv2"));
        assert_eq!(submixture_of_source("mine", &subs), None);
        for t in TemplateType::ALL {
            assert_eq!(TemplateType::parse(t.name()), Some(t));
        }
        assert_eq!(TemplateType::parse("zs"), None);
    }
}
