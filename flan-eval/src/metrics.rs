//! Metrics: accuracy tallies, averages, and the paper's normalised average.

use serde::{Deserialize, Serialize};

/// The paper's normalisation of a score against random guessing:
/// `100 * (score - random) / (100 - random)`, all in percent.
pub fn normalized(score: f64, random: f64) -> f64 {
    100.0 * (score - random) / (100.0 - random)
}

/// Running tally of right answers. Written as `{"n", "correct", "accuracy"}` with the accuracy
/// as a fraction in [0, 1]; the accuracy read back is recomputed, not trusted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "TallyJson", into = "TallyJson")]
pub struct Tally {
    /// Items scored.
    pub n: usize,
    /// Items right.
    pub correct: usize,
}

#[derive(Serialize, Deserialize)]
struct TallyJson {
    n: usize,
    correct: usize,
    #[serde(default)]
    accuracy: f64,
}

impl From<Tally> for TallyJson {
    fn from(t: Tally) -> Self {
        TallyJson {
            n: t.n,
            correct: t.correct,
            accuracy: t.fraction(),
        }
    }
}

impl From<TallyJson> for Tally {
    fn from(t: TallyJson) -> Self {
        Tally {
            n: t.n,
            correct: t.correct,
        }
    }
}

impl Tally {
    /// Accuracy as a fraction in [0, 1] (0 for an empty tally).
    pub fn fraction(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.correct as f64 / self.n as f64
        }
    }

    /// Adds another tally's counts.
    pub fn merge(&mut self, other: Tally) {
        self.n += other.n;
        self.correct += other.correct;
    }

    /// Counts one item.
    pub fn add(&mut self, correct: bool) {
        self.n += 1;
        self.correct += usize::from(correct);
    }

    /// Accuracy in percent (0 for an empty tally).
    pub fn percent(&self) -> f64 {
        100.0 * self.fraction()
    }
}

/// Mean of `values` (0 when empty).
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Standard error of a mean of 0/1 outcomes given in percent over `n` items (as
/// lm-evaluation-harness reports it: sample standard deviation / sqrt(n)), in percent.
pub fn accuracy_stderr(percent: f64, n: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let p = percent / 100.0;
    let var = p * (1.0 - p) * n as f64 / (n as f64 - 1.0);
    100.0 * (var / n as f64).sqrt()
}

/// The six evaluation settings of the paper's normalised average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaperSetting {
    /// MMLU, 5-shot direct.
    MmluDirect,
    /// MMLU, 5-shot chain-of-thought.
    MmluCot,
    /// BBH, 3-shot direct.
    BbhDirect,
    /// BBH, 3-shot chain-of-thought.
    BbhCot,
    /// TyDiQA GoldP, one-shot direct.
    TydiqaDirect,
    /// MGSM, 8-shot chain-of-thought.
    MgsmCot,
}

impl PaperSetting {
    /// All six, in the paper's order.
    pub const ALL: [PaperSetting; 6] = [
        PaperSetting::MmluDirect,
        PaperSetting::MmluCot,
        PaperSetting::BbhDirect,
        PaperSetting::BbhCot,
        PaperSetting::TydiqaDirect,
        PaperSetting::MgsmCot,
    ];

    /// Random-guess score in percent: 25 for four-way MMLU, 0 for generative tasks.
    pub fn random_score(self) -> f64 {
        match self {
            PaperSetting::MmluDirect | PaperSetting::MmluCot => 25.0,
            _ => 0.0,
        }
    }
}

/// The paper's normalised average: the mean over the six settings of each score normalised
/// against random guessing. `None` unless all six scores are given (a partial average is not
/// the paper's number).
pub fn normalized_average(scores: &[(PaperSetting, f64)]) -> Option<f64> {
    let mut normalised = Vec::with_capacity(6);
    for setting in PaperSetting::ALL {
        let (_, score) = scores.iter().find(|(s, _)| *s == setting)?;
        normalised.push(normalized(*score, setting.random_score()));
    }
    Some(mean(&normalised))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_maps_random_to_zero_and_perfect_to_hundred() {
        assert_eq!(normalized(25.0, 25.0), 0.0);
        assert_eq!(normalized(100.0, 25.0), 100.0);
        assert!((normalized(55.0, 25.0) - 40.0).abs() < 1e-12);
        assert_eq!(normalized(30.0, 0.0), 30.0);
    }

    #[test]
    fn normalized_average_needs_all_six() {
        let scores = [
            (PaperSetting::MmluDirect, 55.0), // 40
            (PaperSetting::MmluCot, 25.0),    // 0
            (PaperSetting::BbhDirect, 40.0),
            (PaperSetting::BbhCot, 20.0),
            (PaperSetting::TydiqaDirect, 60.0),
            (PaperSetting::MgsmCot, 0.0),
        ];
        let avg = normalized_average(&scores).unwrap();
        assert!((avg - (40.0 + 0.0 + 40.0 + 20.0 + 60.0 + 0.0) / 6.0).abs() < 1e-12);
        assert_eq!(normalized_average(&scores[..5]), None);
    }

    #[test]
    fn tally_and_stderr() {
        let mut t = Tally::default();
        for c in [true, false, true, true] {
            t.add(c);
        }
        assert_eq!(t.percent(), 75.0);
        assert_eq!(Tally::default().percent(), 0.0);
        // sqrt(0.75*0.25*4/3/4) = 0.25
        assert!((accuracy_stderr(75.0, 4) - 25.0).abs() < 1e-9);
    }
}
