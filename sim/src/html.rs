pub fn render(title: &str, report: &crate::executor::RunReport) -> String { let _ = (title, report); String::new() }
