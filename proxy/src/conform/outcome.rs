//! What one check found, and how it reads on the terminal.

use std::fmt;

/// Whether a check held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The backend did what the protocol asks.
    Pass,
    /// It did not; the outcome says what was expected and what came back.
    Fail,
    /// The check could not run here (e.g. SIGTERM without a command to start the backend).
    Skip,
}

/// A check's verdict, with what was expected and what came back, in words for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Pass, fail or skip.
    pub verdict: Verdict,
    /// What the protocol asks for.
    pub expected: String,
    /// What the backend did.
    pub got: String,
}

impl Outcome {
    /// The backend did what was expected.
    pub fn pass(expected: impl Into<String>, got: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Pass,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// The backend did something else.
    pub fn fail(expected: impl Into<String>, got: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Fail,
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// The check did not run; `why` takes the place of what came back.
    pub fn skip(expected: impl Into<String>, why: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Skip,
            expected: expected.into(),
            got: why.into(),
        }
    }

    /// Pass when `got` is `Ok`, fail with its error otherwise: for checks whose steps stop at the first
    /// difference.
    pub fn from_steps(expected: impl Into<String>, got: Result<String, String>) -> Outcome {
        match got {
            Ok(got) => Outcome::pass(expected, got),
            Err(got) => Outcome::fail(expected, got),
        }
    }
}

/// One line of the report: `FAIL half_close: expected …; got …`.
pub struct Line<'a> {
    /// The check's name.
    pub name: &'a str,
    /// What it found.
    pub outcome: &'a Outcome,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.outcome.verdict {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        };
        let got = if self.outcome.verdict == Verdict::Skip {
            "skipped"
        } else {
            "got"
        };
        write!(
            f,
            "{word} {}: expected {}; {got} {}",
            self.name, self.outcome.expected, self.outcome.got
        )
    }
}

/// The closing line: how many checks passed, failed and were skipped.
pub fn summary(outcomes: &[&Outcome]) -> String {
    let count = |verdict| outcomes.iter().filter(|o| o.verdict == verdict).count();
    format!(
        "{} passed, {} failed, {} skipped",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skip)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_the_check_and_both_sides() {
        let outcome = Outcome::fail("3 replies, then end of stream", "1 reply, then the connection closed");
        let line = Line {
            name: "half_close",
            outcome: &outcome,
        };
        assert_eq!(
            line.to_string(),
            "FAIL half_close: expected 3 replies, then end of stream; got 1 reply, then the connection closed"
        );
        let skipped = Outcome::skip("exit after finishing", "needs `-- COMMAND {addr}`");
        let line = Line {
            name: "sigterm_while_busy",
            outcome: &skipped,
        };
        assert!(line.to_string().starts_with("SKIP sigterm_while_busy: "));
        assert!(line.to_string().ends_with("; skipped needs `-- COMMAND {addr}`"));
    }

    #[test]
    fn the_summary_counts_each_verdict() {
        let (pass, fail, skip) = (
            Outcome::pass("a", "a"),
            Outcome::fail("a", "b"),
            Outcome::skip("a", "c"),
        );
        assert_eq!(summary(&[&pass, &pass, &fail, &skip]), "2 passed, 1 failed, 1 skipped");
    }
}
