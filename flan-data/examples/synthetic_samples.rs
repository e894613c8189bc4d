//! Prints a few rendered items of every synthetic family, to read what the model will see:
//! `cargo run -p flan-data --example synthetic_samples [-- FAMILY]`.

use flan_data::mode::Mode;
use flan_data::synthetic::{self, EvalRequest, Suite, TemplateSet};

fn main() -> flan_data::Result<()> {
    let only = std::env::args().nth(1);
    let suite = Suite::new()?;
    for def in synthetic::FAMILIES {
        if only.as_deref().is_some_and(|f| f != def.name) {
            continue;
        }
        let held = if def.held_out { " (held out)" } else { "" };
        println!("=== {} [{}]{held}", def.name, def.group);
        let mut modes = vec![(Mode::Direct, 0), (Mode::Direct, 1)];
        if def.has_rationale {
            modes.push((Mode::ZeroShotCot, 0));
        }
        for (mode, shots) in modes {
            let request = EvalRequest {
                seed: 0,
                n: 1,
                templates: TemplateSet::All,
                mode,
                shots,
            };
            for item in suite.eval_items(def.name, &request)? {
                println!("--- {} template {}", mode.label(shots), item.template);
                println!("{}\n>>> {}", item.inputs, item.targets);
            }
        }
    }
    Ok(())
}
