//! JUnit XML for CI: one `<testsuite>`, one `<testcase>` per scenario. Written by hand (it is
//! a dozen lines of format) with every text and attribute escaped.

use super::{ScenarioReport, Verdict};
use std::fmt::Write as _;

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

pub fn render(reports: &[ScenarioReport]) -> String {
    let failures = reports.iter().filter(|r| matches!(r.verdict, Verdict::Fail(_))).count();
    let skipped = reports.iter().filter(|r| matches!(r.verdict, Verdict::ExpectedFail { .. })).count();
    let seconds: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"wg-sim run --real\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" \
         time=\"{seconds:.3}\">",
        reports.len()
    );
    for report in reports {
        render_case(&mut xml, report);
    }
    xml.push_str("</testsuite>\n");
    xml
}

fn render_case(xml: &mut String, report: &ScenarioReport) {
    let _ = writeln!(
        xml,
        "  <testcase classname=\"scenarios\" name=\"{}\" file=\"{}\" time=\"{:.3}\">",
        escape(&report.name),
        escape(&report.file.display().to_string()),
        report.elapsed.as_secs_f64()
    );
    match &report.verdict {
        Verdict::Pass => {}
        Verdict::Fail(failures) => {
            let _ = writeln!(
                xml,
                "    <failure message=\"{}\">{}</failure>",
                escape(failures.first().map_or("", String::as_str)),
                escape(&failures.join("\n"))
            );
        }
        Verdict::ExpectedFail { reason, .. } => {
            let _ = writeln!(xml, "    <skipped message=\"expected to fail in real mode: {}\"/>", escape(reason));
        }
    }
    let out: Vec<String> = report.lines().into_iter().skip(1).collect();
    if !out.is_empty() {
        let _ = writeln!(xml, "    <system-out>{}</system-out>", escape(&out.join("\n")));
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
}
