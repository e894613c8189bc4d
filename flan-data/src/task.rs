//! Tasks and the registry that holds them: what a task is made of (examples, the family of
//! templates it renders with, the submixture it belongs to) and the checks that every template of
//! its family can render every one of its examples.

use crate::error::{Error, Result};
use crate::example::Example;
use crate::source::Skipped;
use crate::template::{Field, TemplateLibrary};
use std::collections::HashMap;
use std::path::PathBuf;

/// One task: a named set of examples with a template family.
#[derive(Debug, Clone)]
pub struct Task {
    /// Unique name (e.g. `cot_aqua`, `task1149_item_check_edible`).
    pub name: String,
    /// The submixture it is mixed in (`flan`, `t0`, `niv2`, `cot`, `dialog`, or a user's own).
    pub submixture: String,
    /// The template family it renders with.
    pub family: String,
    /// The file(s) it was read from.
    pub sources: Vec<PathBuf>,
    /// The training examples.
    pub examples: Vec<Example>,
    /// A task-level instruction (NIv2 `Definition`).
    pub definition: Option<String>,
    /// Demonstrations (NIv2 positive examples), preferred as few-shot exemplars.
    pub demonstrations: Vec<Example>,
    /// Records skipped while reading (lenient mode).
    pub skipped: Skipped,
    /// Fields of the records that the format does not use, with the records they were on.
    pub ignored: std::collections::BTreeMap<String, usize>,
}

/// All tasks of a mixture, by name.
#[derive(Debug, Clone, Default)]
pub struct TaskRegistry {
    tasks: Vec<Task>,
    index: HashMap<String, usize>,
}

impl TaskRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task; names must be unique.
    pub fn add(&mut self, task: Task) -> Result<()> {
        if self.index.contains_key(&task.name) {
            return Err(Error::config(
                format!("task `{}`", task.name),
                "defined twice; task names must be unique",
            ));
        }
        self.index.insert(task.name.clone(), self.tasks.len());
        self.tasks.push(task);
        Ok(())
    }

    /// The tasks in the order they were added.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// A task by name.
    pub fn get(&self, name: &str) -> Option<&Task> {
        self.index.get(name).map(|&i| &self.tasks[i])
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether there is no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Checks that every task has examples and that its family's templates can render each of
    /// them: a family that uses `{rationale}` needs a rationale on every example, one that uses
    /// `{definition}` needs a task definition. Errors name the offending file and line.
    pub fn check_renderable(&self, library: &TemplateLibrary) -> Result<()> {
        for task in &self.tasks {
            let family = library.family(&task.family)?;
            if task.examples.is_empty() {
                return Err(Error::config(
                    format!("task `{}`", task.name),
                    format!("has no examples (read from {:?})", task.sources),
                ));
            }
            let needs_rationale =
                family.needs(Field::Rationale) || family.inversion_needs(Field::Rationale);
            if needs_rationale {
                let pool = task.examples.iter().chain(&task.demonstrations);
                if let Some(ex) = pool.into_iter().find(|e| e.rationale.is_none()) {
                    return Err(Error::parse(
                        &ex.provenance.file,
                        ex.provenance.line,
                        format!(
                            "task `{}` uses template family `{}`, whose templates need a rationale; this example has none",
                            task.name, family.name
                        ),
                    ));
                }
            }
            let needs_definition =
                family.needs(Field::Definition) || family.inversion_needs(Field::Definition);
            if needs_definition && task.definition.is_none() {
                return Err(Error::config(
                    format!("task `{}`", task.name),
                    format!(
                        "template family `{}` needs a task definition; the task has none",
                        family.name
                    ),
                ));
            }
        }
        Ok(())
    }
}
