//! JUnit XML, so CI systems show scenario failures as test failures: one `<testsuite>`, one
//! `<testcase>` per scenario. Written by hand (it is a dozen lines of format) with every text
//! and attribute escaped. Shared by the simulator (`wg-sim run --junit`) and the real-process
//! runner (`wg-sim run --real --junit`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

/// One scenario's result.
#[derive(Clone, Debug)]
pub struct TestCase {
    pub name: String,
    pub file: PathBuf,
    pub time: Duration,
    pub outcome: Outcome,
    /// Shown by CI beside the case: what ran, what was skipped.
    pub system_out: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Pass,
    /// `message` is one line (CI shows it in lists); `body` the whole story.
    Failure {
        message: String,
        body: String,
    },
    Skipped {
        message: String,
    },
}

/// Escapes the five XML specials, and drops characters XML 1.0 cannot carry at all.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

/// The whole document: a suite named `suite` holding `cases` in order.
pub fn render(suite: &str, cases: &[TestCase]) -> String {
    let failures = cases.iter().filter(|case| matches!(case.outcome, Outcome::Failure { .. })).count();
    let skipped = cases.iter().filter(|case| matches!(case.outcome, Outcome::Skipped { .. })).count();
    let seconds: f64 = cases.iter().map(|case| case.time.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" \
         time=\"{seconds:.3}\">",
        escape(suite),
        cases.len()
    );
    for case in cases {
        render_case(&mut xml, case);
    }
    xml.push_str("</testsuite>\n");
    xml
}

fn render_case(xml: &mut String, case: &TestCase) {
    let _ = writeln!(
        xml,
        "  <testcase classname=\"scenarios\" name=\"{}\" file=\"{}\" time=\"{:.3}\">",
        escape(&case.name),
        escape(&case.file.display().to_string()),
        case.time.as_secs_f64()
    );
    match &case.outcome {
        Outcome::Pass => {}
        Outcome::Failure { message, body } => {
            let _ = writeln!(xml, "    <failure message=\"{}\">{}</failure>", escape(message), escape(body));
        }
        Outcome::Skipped { message } => {
            let _ = writeln!(xml, "    <skipped message=\"{}\"/>", escape(message));
        }
    }
    if !case.system_out.is_empty() {
        let _ = writeln!(xml, "    <system-out>{}</system-out>", escape(&case.system_out.join("\n")));
    }
    xml.push_str("  </testcase>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(escape("a<b & \"c\" 'd'>\u{1}"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
    }

    #[test]
    fn counts_failures_and_skips_in_the_suite() {
        let case = |name: &str, outcome| TestCase {
            name: name.into(),
            file: "s.toml".into(),
            time: Duration::from_millis(1500),
            outcome,
            system_out: vec![],
        };
        let xml = render(
            "suite",
            &[
                case("a", Outcome::Pass),
                case("b", Outcome::Failure { message: "m".into(), body: "x < y".into() }),
                case("c", Outcome::Skipped { message: "why".into() }),
            ],
        );
        assert!(xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"4.500\""), "{xml}");
        assert!(xml.contains("<failure message=\"m\">x &lt; y</failure>"), "{xml}");
        assert!(xml.contains("<skipped message=\"why\"/>"), "{xml}");
    }
}
