//! Instruction templates: the data file users extend, parsed into patterns that render fast.
//!
//! A template library is TOML (see `flan-data/templates/default.toml`, embedded as the default):
//! option styles, and per task family a list of zero-shot templates (an inputs pattern and a
//! targets pattern), optional input-inversion templates, CoT triggers and answer phrases, and
//! few-shot settings. Patterns use `{field}` placeholders — `inputs`, `targets`, `options`,
//! `rationale`, `trigger`, `answer_phrase`, `definition` — and `{{`/`}}` for literal braces.
//! Unknown placeholders are an error when the file is loaded, not when an example renders.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The built-in template library.
pub const DEFAULT_TEMPLATES: &str = include_str!("../templates/default.toml");

/// A value a pattern can insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The example's input (question, passage, ...).
    Inputs,
    /// The example's target (or the option label, with lettered options).
    Targets,
    /// The rendered answer options (empty in the no-options form).
    Options,
    /// The chain of thought.
    Rationale,
    /// A CoT trigger such as "Let's think step by step.".
    Trigger,
    /// An answer phrase such as "So the answer is".
    AnswerPhrase,
    /// The task definition (NIv2).
    Definition,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "inputs" => Field::Inputs,
            "targets" => Field::Targets,
            "options" => Field::Options,
            "rationale" => Field::Rationale,
            "trigger" => Field::Trigger,
            "answer_phrase" => Field::AnswerPhrase,
            "definition" => Field::Definition,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed pattern: literal text and placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    parts: Vec<Part>,
}

/// The values a pattern is rendered with. `None` for a field the pattern uses is an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    /// See [`Field::Inputs`].
    pub inputs: &'a str,
    /// See [`Field::Targets`].
    pub targets: &'a str,
    /// See [`Field::Options`].
    pub options: &'a str,
    /// See [`Field::Rationale`].
    pub rationale: Option<&'a str>,
    /// See [`Field::Trigger`].
    pub trigger: &'a str,
    /// See [`Field::AnswerPhrase`].
    pub answer_phrase: &'a str,
    /// See [`Field::Definition`].
    pub definition: Option<&'a str>,
}

impl Pattern {
    /// Parses `source`; `context` names the pattern in errors.
    pub fn parse(source: &str, context: &str) -> Result<Pattern> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &source[at + 1..];
                    let end = rest.find('}').ok_or_else(|| {
                        Error::config(context, format!("unclosed `{{` in pattern {source:?}"))
                    })?;
                    let name = &rest[..end];
                    let field = Field::parse(name).ok_or_else(|| {
                        Error::config(
                            context,
                            format!(
                                "unknown placeholder `{{{name}}}` in {source:?}; expected one of \
                                 inputs, targets, options, rationale, trigger, answer_phrase, definition"
                            ),
                        )
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                    for _ in 0..name.chars().count() + 1 {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(Error::config(
                        context,
                        format!("stray `}}` in pattern {source:?} (write `}}}}`)"),
                    ))
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Pattern {
            source: source.to_string(),
            parts,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern uses `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.parts.contains(&Part::Field(field))
    }

    /// Appends the rendering to `out`. Fails only when a used optional value is absent.
    pub fn render_into(
        &self,
        values: &Values<'_>,
        out: &mut String,
    ) -> std::result::Result<(), Field> {
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(f) => out.push_str(match f {
                    Field::Inputs => values.inputs,
                    Field::Targets => values.targets,
                    Field::Options => values.options,
                    Field::Rationale => values.rationale.ok_or(*f)?,
                    Field::Trigger => values.trigger,
                    Field::AnswerPhrase => values.answer_phrase,
                    Field::Definition => values.definition.ok_or(*f)?,
                }),
            }
        }
        Ok(())
    }

    /// Renders into a new string.
    pub fn render(&self, values: &Values<'_>) -> std::result::Result<String, Field> {
        let mut out = String::with_capacity(self.source.len() + values.inputs.len() + 64);
        self.render_into(values, &mut out)?;
        Ok(out)
    }
}

/// An (inputs, targets) pattern pair.
#[derive(Debug, Clone)]
pub struct Template {
    /// Renders the model input.
    pub inputs: Pattern,
    /// Renders the expected output.
    pub targets: Pattern,
}

impl Template {
    /// Whether either side uses `field`.
    pub fn uses(&self, field: Field) -> bool {
        self.inputs.uses(field) || self.targets.uses(field)
    }
}

/// How answer options are laid out. Labels use `{A}` (A, B, ...), `{a}` (a, b, ...), `{1}`
/// (1, 2, ...) or `{i}` (i, ii, ...); when `answer_is_label`, the target becomes the label.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionStyle {
    /// Label pattern of each item, e.g. `"-"`, `"({A})"`, `"{1}."`.
    pub label: String,
    /// Between the label and the option text.
    #[serde(default = "default_space")]
    pub after_label: String,
    /// Between items (`"\n"` for a list, `" "` inline).
    #[serde(default = "default_newline")]
    pub join: String,
    /// Whether the target becomes the item's label (lettered/numbered styles).
    #[serde(default)]
    pub answer_is_label: bool,
}

fn default_space() -> String {
    " ".into()
}
fn default_newline() -> String {
    "\n".into()
}

impl OptionStyle {
    /// The label of item `index` (0-based).
    pub fn label_for(&self, index: usize) -> String {
        let letter = |base: u8| -> String {
            // A..Z, then AA, AB, ... for long lists.
            let mut n = index;
            let mut s = Vec::new();
            loop {
                s.push(base + (n % 26) as u8);
                if n < 26 {
                    break;
                }
                n = n / 26 - 1;
            }
            s.reverse();
            String::from_utf8(s).unwrap_or_default()
        };
        self.label
            .replace("{A}", &letter(b'A'))
            .replace("{a}", &letter(b'a'))
            .replace("{1}", &(index + 1).to_string())
            .replace("{i}", &roman(index + 1))
    }

    /// Renders `options` under `header` (none when empty); returns the block and the target to
    /// use for `target` (its label, or the text itself).
    pub fn render(&self, header: &str, options: &[String], target: &str) -> (String, String) {
        let mut block = String::new();
        if !header.is_empty() {
            block.push_str(header);
            block.push('\n');
        }
        let mut answer = target.to_string();
        for (i, option) in options.iter().enumerate() {
            if i > 0 {
                block.push_str(&self.join);
            }
            let label = self.label_for(i);
            block.push_str(&label);
            if !label.is_empty() {
                block.push_str(&self.after_label);
            }
            block.push_str(option);
            if self.answer_is_label && option == target {
                answer = label;
            }
        }
        (block, answer)
    }
}

fn roman(mut n: usize) -> String {
    const TABLE: [(usize, &str); 13] = [
        (1000, "m"),
        (900, "cm"),
        (500, "d"),
        (400, "cd"),
        (100, "c"),
        (90, "xc"),
        (50, "l"),
        (40, "xl"),
        (10, "x"),
        (9, "ix"),
        (5, "v"),
        (4, "iv"),
        (1, "i"),
    ];
    let mut s = String::new();
    for (value, digits) in TABLE {
        while n >= value {
            s.push_str(digits);
            n -= value;
        }
    }
    s
}

/// Few-shot layout of a family: `exemplar = inputs_prefix + x + x_y_delimiter + targets_prefix +
/// y`, exemplars and the query joined by a separator, an optional preamble on top.
#[derive(Debug, Clone)]
pub struct FewShot {
    /// Patterns for exemplars and query; when empty, the family's zero-shot templates are used.
    pub templates: Vec<Template>,
    /// Rendered once above the exemplars (e.g. a NIv2 definition); one is chosen per item.
    pub preambles: Vec<Pattern>,
    /// (inputs prefix, targets prefix) pairs; one is chosen per item.
    pub prefixes: Vec<(String, String)>,
    /// Between an exemplar's input and its target.
    pub x_y_delimiter: String,
    /// Between exemplars; one is chosen per item.
    pub separators: Vec<String>,
    /// Fewest and most exemplars drawn before the token budget is applied.
    pub min_exemplars: usize,
    /// See `min_exemplars`.
    pub max_exemplars: usize,
    /// Take exemplars from the task's demonstrations (NIv2 positive examples) when it has some.
    pub use_demonstrations: bool,
}

/// The templates of one task family.
#[derive(Debug, Clone)]
pub struct Family {
    /// The family name tasks refer to.
    pub name: String,
    /// Zero-shot templates (about ten per family).
    pub templates: Vec<Template>,
    /// Input-inversion templates (produce the question from the answer and rationale).
    pub inversions: Vec<Template>,
    /// CoT triggers.
    pub triggers: Vec<String>,
    /// Answer phrases placed before the answer in CoT targets.
    pub answer_phrases: Vec<String>,
    /// Few-shot layout.
    pub few_shot: FewShot,
}

impl Family {
    /// Whether any template of this family needs `field`.
    pub fn needs(&self, field: Field) -> bool {
        let few = &self.few_shot;
        self.templates
            .iter()
            .chain(&few.templates)
            .any(|t| t.uses(field))
            || few.preambles.iter().any(|p| p.uses(field))
    }

    /// Whether the inversion templates need `field`.
    pub fn inversion_needs(&self, field: Field) -> bool {
        self.inversions.iter().any(|t| t.uses(field))
    }
}

/// All families and the option styles.
#[derive(Debug, Clone)]
pub struct TemplateLibrary {
    /// Families by name.
    pub families: BTreeMap<String, Family>,
    /// Headers put above answer options ("" for none).
    pub option_headers: Vec<String>,
    /// Option layouts.
    pub option_styles: Vec<OptionStyle>,
}

// ---- the file format ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTemplate {
    inputs: String,
    targets: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePrefix {
    inputs: String,
    targets: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFewShot {
    #[serde(default)]
    templates: Vec<FileTemplate>,
    #[serde(default)]
    preambles: Vec<String>,
    #[serde(default)]
    prefixes: Vec<FilePrefix>,
    #[serde(default = "default_delimiter")]
    x_y_delimiter: String,
    #[serde(default = "default_separators")]
    separators: Vec<String>,
    #[serde(default = "one")]
    min_exemplars: usize,
    #[serde(default = "five")]
    max_exemplars: usize,
    #[serde(default)]
    use_demonstrations: bool,
}

fn default_delimiter() -> String {
    "\n\n".into()
}
fn default_separators() -> Vec<String> {
    vec!["\n\n\n".into()]
}
fn one() -> usize {
    1
}
fn five() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFamily {
    name: String,
    templates: Vec<FileTemplate>,
    #[serde(default)]
    inversions: Vec<FileTemplate>,
    #[serde(default)]
    triggers: Vec<String>,
    #[serde(default)]
    answer_phrases: Vec<String>,
    few_shot: Option<FileFewShot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    styles: Vec<OptionStyle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    options: Option<FileOptions>,
    #[serde(default)]
    families: Vec<FileFamily>,
}

fn parse_templates(list: Vec<FileTemplate>, context: &str) -> Result<Vec<Template>> {
    list.into_iter()
        .enumerate()
        .map(|(i, t)| {
            let ctx = format!("{context} template {i}");
            Ok(Template {
                inputs: Pattern::parse(&t.inputs, &ctx)?,
                targets: Pattern::parse(&t.targets, &ctx)?,
            })
        })
        .collect()
}

impl TemplateLibrary {
    /// The built-in library.
    pub fn builtin() -> Result<TemplateLibrary> {
        Self::from_toml(DEFAULT_TEMPLATES, "built-in templates")
    }

    /// Parses a library; `origin` (usually the file path) names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<TemplateLibrary> {
        let file: TemplateFile =
            toml::from_str(text).map_err(|e| Error::config(origin, e.to_string()))?;
        let mut lib = TemplateLibrary {
            families: BTreeMap::new(),
            option_headers: Vec::new(),
            option_styles: Vec::new(),
        };
        lib.absorb(file, origin)?;
        Ok(lib)
    }

    /// Reads a user file and adds it on top of this library: families with a known name are
    /// replaced, new ones added; option headers and styles, when given, replace ours.
    pub fn extend_from_file(&mut self, path: &std::path::Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let origin = path.display().to_string();
        let file: TemplateFile =
            toml::from_str(text).map_err(|e| Error::config(&origin, e.to_string()))?;
        self.absorb(file, &origin)
    }

    fn absorb(&mut self, file: TemplateFile, origin: &str) -> Result<()> {
        if let Some(options) = file.options {
            if !options.headers.is_empty() {
                self.option_headers = options.headers;
            }
            if !options.styles.is_empty() {
                self.option_styles = options.styles;
            }
        }
        for fam in file.families {
            let ctx = format!("{origin}: family `{}`", fam.name);
            if fam.templates.is_empty() {
                return Err(Error::config(&ctx, "a family needs at least one template"));
            }
            let few = fam.few_shot.unwrap_or(FileFewShot {
                templates: Vec::new(),
                preambles: Vec::new(),
                prefixes: Vec::new(),
                x_y_delimiter: default_delimiter(),
                separators: default_separators(),
                min_exemplars: 1,
                max_exemplars: 5,
                use_demonstrations: false,
            });
            if few.min_exemplars == 0 || few.min_exemplars > few.max_exemplars {
                return Err(Error::config(
                    &ctx,
                    format!(
                        "few_shot needs 1 <= min_exemplars <= max_exemplars, got {}..{}",
                        few.min_exemplars, few.max_exemplars
                    ),
                ));
            }
            if few.separators.is_empty() {
                return Err(Error::config(&ctx, "few_shot.separators must not be empty"));
            }
            let family = Family {
                name: fam.name.clone(),
                templates: parse_templates(fam.templates, &ctx)?,
                inversions: parse_templates(fam.inversions, &format!("{ctx} inversion"))?,
                triggers: fam.triggers,
                answer_phrases: fam.answer_phrases,
                few_shot: FewShot {
                    templates: parse_templates(few.templates, &format!("{ctx} few_shot"))?,
                    preambles: few
                        .preambles
                        .iter()
                        .map(|p| Pattern::parse(p, &format!("{ctx} preamble")))
                        .collect::<Result<_>>()?,
                    prefixes: if few.prefixes.is_empty() {
                        vec![(String::new(), String::new())]
                    } else {
                        few.prefixes
                            .into_iter()
                            .map(|p| (p.inputs, p.targets))
                            .collect()
                    },
                    x_y_delimiter: few.x_y_delimiter,
                    separators: few.separators,
                    min_exemplars: few.min_exemplars,
                    max_exemplars: few.max_exemplars,
                    use_demonstrations: few.use_demonstrations,
                },
            };
            if family.needs(Field::Trigger) && family.triggers.is_empty() {
                return Err(Error::config(
                    &ctx,
                    "templates use {trigger} but `triggers` is empty",
                ));
            }
            if family.needs(Field::AnswerPhrase) && family.answer_phrases.is_empty() {
                return Err(Error::config(
                    &ctx,
                    "templates use {answer_phrase} but `answer_phrases` is empty",
                ));
            }
            self.families.insert(fam.name, family);
        }
        if self.option_styles.is_empty() {
            return Err(Error::config(
                origin,
                "no option styles: give at least one [[options.styles]]",
            ));
        }
        if self.option_headers.is_empty() {
            self.option_headers.push(String::new());
        }
        Ok(())
    }

    /// A family by name, or an error listing the known ones.
    pub fn family(&self, name: &str) -> Result<&Family> {
        self.families.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.families.keys().map(String::as_str).collect();
            Error::config(
                format!("template family `{name}`"),
                format!("unknown; known families: {known:?}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_and_render() {
        let p = Pattern::parse("Q: {inputs} {{x}} {options}", "t").unwrap();
        assert!(p.uses(Field::Inputs) && p.uses(Field::Options) && !p.uses(Field::Rationale));
        let v = Values {
            inputs: "why?",
            options: "A",
            ..Default::default()
        };
        assert_eq!(p.render(&v).unwrap(), "Q: why? {x} A");
        assert!(Pattern::parse("{nope}", "t")
            .unwrap_err()
            .to_string()
            .contains("unknown placeholder"));
        assert!(Pattern::parse("{inputs", "t").is_err());
        assert!(Pattern::parse("a } b", "t").is_err());
        let r = Pattern::parse("{rationale}", "t").unwrap();
        assert_eq!(r.render(&v), Err(Field::Rationale));
    }

    #[test]
    fn option_styles_letter_and_answer() {
        let style = OptionStyle {
            label: "({A})".into(),
            after_label: " ".into(),
            join: "\n".into(),
            answer_is_label: true,
        };
        let opts = vec!["red".to_string(), "blue".to_string()];
        let (block, answer) = style.render("OPTIONS:", &opts, "blue");
        assert_eq!(block, "OPTIONS:\n(A) red\n(B) blue");
        assert_eq!(answer, "(B)");
        assert_eq!(style.label_for(26), "(AA)");
        let roman_style = OptionStyle {
            label: "{i}.".into(),
            ..style
        };
        assert_eq!(roman_style.label_for(3), "iv.");
    }

    #[test]
    fn builtin_library_loads() {
        let lib = TemplateLibrary::builtin().unwrap();
        for name in ["cot", "qa", "niv2"] {
            let fam = lib.family(name).unwrap();
            assert!(
                fam.templates.len() >= 5,
                "{name} has {} templates",
                fam.templates.len()
            );
        }
        assert!(lib.family("cot").unwrap().inversions.len() >= 2);
        assert!(lib.family("zzz").is_err());
    }
}
