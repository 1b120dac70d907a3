//! Every problem kind the server can emit has its section in the troubleshooting guide.

use intake_api::problem::ProblemKind;

#[test]
fn every_problem_type_has_a_section_in_the_guide() {
    let guide = include_str!("../../../docs/troubleshooting.md");
    assert!(guide.starts_with("# Event Intake API issues"));
    for kind in ProblemKind::ALL {
        let heading = format!("\n## {}\n", kind.slug);
        assert!(guide.contains(&heading), "docs/troubleshooting.md lacks a section {heading:?}");
        assert!(
            guide.contains(&format!("**{} {}.**", kind.status, kind.title)),
            "the {} section should open with its status and title",
            kind.slug
        );
    }
}
