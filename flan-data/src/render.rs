//! Turning one example into model input and target text: zero-shot, few-shot (k exemplars from
//! the same task, never the query, within a token budget), with or without answer options, and
//! input inversion.

use crate::error::{Error, Result};
use crate::example::Example;
use crate::task::Task;
use crate::template::{Family, Field, Template, TemplateLibrary, Values};
use crate::tokenizer::Tokenizer;
use rand::seq::SliceRandom;
use rand::Rng;

/// Counts tokens for the few-shot budget.
pub trait TokenCount: Sync {
    /// Number of tokens of `text` (without EOS).
    fn count(&self, text: &str) -> usize;

    /// A bound no smaller than [`TokenCount::count`] that is cheap to compute; when it fits,
    /// counting is skipped. The default (bytes + 1) holds for SentencePiece-style vocabularies,
    /// where every piece but the leading word marker covers at least one byte.
    fn upper_bound(&self, text: &str) -> usize {
        text.len() + 1
    }
}

impl TokenCount for Tokenizer {
    fn count(&self, text: &str) -> usize {
        self.count_pieces(text).unwrap_or(usize::MAX / 4)
    }
}

/// Whitespace-separated words: the budget's unit when no tokenizer is given. It undercounts
/// subword tokens, so a budget in words should be set lower than one in tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct WordCount;

impl TokenCount for WordCount {
    fn count(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
    fn upper_bound(&self, text: &str) -> usize {
        text.len() / 2 + 1
    }
}

/// Which form an example is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// One template, no exemplars.
    ZeroShot,
    /// Exemplars from the same task, then the query.
    FewShot,
    /// Input inversion: produce the question from the answer (and rationale).
    Inversion,
}

impl Form {
    /// Stable lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Form::ZeroShot => "zero_shot",
            Form::FewShot => "few_shot",
            Form::Inversion => "inversion",
        }
    }
}

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderRequest {
    /// Index of the query in `task.examples`.
    pub example: usize,
    /// The form.
    pub form: Form,
    /// Template index (taken modulo the number of templates of that form).
    pub template: usize,
    /// Render answer options (when the example has some).
    pub with_options: bool,
    /// Token budget of the whole input (few-shot drops exemplars until it fits).
    pub input_budget: usize,
}

impl RenderRequest {
    /// Example `example` as it is, zero-shot without options: what sources whose examples
    /// come already formatted (collection rows, span-corruption chunks) are drawn as.
    pub fn as_given(example: usize, input_budget: usize) -> Self {
        RenderRequest {
            example,
            form: Form::ZeroShot,
            template: 0,
            with_options: false,
            input_budget,
        }
    }
}

/// A rendered example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Model input text.
    pub inputs: String,
    /// Target text.
    pub targets: String,
    /// The form used.
    pub form: Form,
    /// The template index used (within its form's list).
    pub template: usize,
    /// Whether options were rendered.
    pub with_options: bool,
    /// Exemplars kept (few-shot): indices into the task's examples, or into its
    /// demonstrations when `from_demonstrations`.
    pub exemplars: Vec<usize>,
    /// Whether the exemplars are the task's demonstrations.
    pub from_demonstrations: bool,
}

struct Choices<'a> {
    trigger: &'a str,
    answer_phrase: &'a str,
    header: &'a str,
    style: Option<&'a crate::template::OptionStyle>,
}

fn render_pair(
    template: &Template,
    ex: &Example,
    task: &Task,
    choices: &Choices<'_>,
) -> Result<(String, String)> {
    let (options, answer) = match (choices.style, ex.options.as_deref()) {
        (Some(style), Some(opts)) if !opts.is_empty() => {
            style.render(choices.header, opts, &ex.targets)
        }
        _ => (String::new(), ex.targets.clone()),
    };
    let values = Values {
        inputs: &ex.inputs,
        targets: &answer,
        options: &options,
        rationale: ex.rationale.as_deref(),
        trigger: choices.trigger,
        answer_phrase: choices.answer_phrase,
        definition: task.definition.as_deref(),
    };
    let missing = |f: Field| {
        Error::parse(
            &ex.provenance.file,
            ex.provenance.line,
            format!(
                "task `{}`: the template needs {f:?}, which this example lacks",
                task.name
            ),
        )
    };
    let inputs = template.inputs.render(&values).map_err(missing)?;
    let targets = template.targets.render(&values).map_err(missing)?;
    Ok((inputs.trim().to_string(), targets.trim().to_string()))
}

fn pick<'a, R: Rng>(items: &'a [String], rng: &mut R) -> &'a str {
    items.choose(rng).map(String::as_str).unwrap_or("")
}

/// Renders `request.example` of `task` with `family`; every random choice comes from `rng`.
pub fn render<R: Rng>(
    library: &TemplateLibrary,
    family: &Family,
    task: &Task,
    request: &RenderRequest,
    counter: &dyn TokenCount,
    rng: &mut R,
) -> Result<Rendered> {
    let ex = task.examples.get(request.example).ok_or_else(|| {
        Error::config(
            format!("task `{}`", task.name),
            format!("no example {}", request.example),
        )
    })?;
    let with_options = request.with_options && ex.has_options();
    let choices = Choices {
        trigger: pick(&family.triggers, rng),
        answer_phrase: pick(&family.answer_phrases, rng),
        header: pick(&library.option_headers, rng),
        style: if with_options {
            library.option_styles.choose(rng)
        } else {
            None
        },
    };
    let form = match request.form {
        Form::Inversion if family.inversions.is_empty() => Form::ZeroShot,
        f => f,
    };
    match form {
        Form::ZeroShot | Form::Inversion => {
            let list = if form == Form::Inversion {
                &family.inversions
            } else {
                &family.templates
            };
            let template = request.template % list.len();
            let (inputs, targets) = render_pair(&list[template], ex, task, &choices)?;
            Ok(Rendered {
                inputs,
                targets,
                form,
                template,
                with_options,
                exemplars: Vec::new(),
                from_demonstrations: false,
            })
        }
        Form::FewShot => render_few_shot(
            family,
            task,
            ex,
            request,
            &choices,
            counter,
            with_options,
            rng,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn render_few_shot<R: Rng>(
    family: &Family,
    task: &Task,
    query: &Example,
    request: &RenderRequest,
    choices: &Choices<'_>,
    counter: &dyn TokenCount,
    with_options: bool,
    rng: &mut R,
) -> Result<Rendered> {
    let few = &family.few_shot;
    let list = if few.templates.is_empty() {
        &family.templates
    } else {
        &few.templates
    };
    let template_index = request.template % list.len();
    let template = &list[template_index];
    let (in_prefix, out_prefix) = few.prefixes.choose(rng).cloned().unwrap_or_default();
    let separator = pick(&few.separators, rng).to_string();

    // The exemplar pool: demonstrations when the family asks for them, else the task's own
    // examples minus the query (by index and by identical input, since data sets repeat items).
    let use_demos = few.use_demonstrations && !task.demonstrations.is_empty();
    let pool: &[Example] = if use_demos {
        &task.demonstrations
    } else {
        &task.examples
    };
    let eligible = |i: usize| (use_demos || i != request.example) && pool[i].inputs != query.inputs;
    let want = rng.gen_range(few.min_exemplars..=few.max_exemplars);
    let mut picked: Vec<usize> = Vec::with_capacity(want);
    let available = pool.len() - usize::from(!use_demos);
    if available > 0 {
        let draws = rand::seq::index::sample(rng, pool.len(), (want + 1).min(pool.len()));
        picked.extend(draws.into_iter().filter(|&i| eligible(i)).take(want));
    }

    let preamble = match few.preambles.choose(rng) {
        Some(p) => {
            let values = Values {
                definition: task.definition.as_deref(),
                ..Default::default()
            };
            p.render(&values).map_err(|f| {
                Error::config(
                    format!("task `{}`", task.name),
                    format!("preamble needs {f:?}"),
                )
            })?
        }
        None => String::new(),
    };
    let (q_in, q_out) = render_pair(template, query, task, choices)?;
    let query_text = format!("{in_prefix}{q_in}{}{out_prefix}", few.x_y_delimiter);
    let mut shots = Vec::with_capacity(picked.len());
    for &i in &picked {
        let (x, y) = render_pair(template, &pool[i], task, choices)?;
        shots.push(format!(
            "{in_prefix}{x}{}{out_prefix}{y}",
            few.x_y_delimiter
        ));
    }

    // Token budget: drop exemplars from the end until preamble + exemplars + query fit. The total
    // is the sum of the parts' counts (joins may merge a token or two); the cheap upper bound
    // skips exact counting when the whole prompt clearly fits.
    let bound: usize = counter.upper_bound(&preamble)
        + counter.upper_bound(&query_text)
        + shots
            .iter()
            .map(|s| counter.upper_bound(s) + 1)
            .sum::<usize>();
    if bound > request.input_budget {
        let fixed = counter.count(&preamble) + counter.count(&query_text) + 1;
        let mut total = fixed;
        let mut keep = 0;
        // Counted lazily: shots after the first that does not fit are dropped uncounted.
        for shot in &shots {
            let c = counter.count(shot);
            if total + c > request.input_budget {
                break;
            }
            total += c;
            keep += 1;
        }
        shots.truncate(keep);
        picked.truncate(keep);
    }

    let mut inputs = String::new();
    if !preamble.is_empty() {
        inputs.push_str(&preamble);
        inputs.push_str(&separator);
    }
    for shot in &shots {
        inputs.push_str(shot);
        inputs.push_str(&separator);
    }
    inputs.push_str(&query_text);
    let inputs = inputs.trim_end().to_string();
    Ok(Rendered {
        inputs,
        targets: q_out,
        form: Form::FewShot,
        template: template_index,
        with_options,
        exemplars: picked,
        from_demonstrations: use_demos,
    })
}
