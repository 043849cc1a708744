//! The web UI's templates, compiled into the binary. They end in `.html`, so minijinja
//! HTML-escapes every value they print (auto-escape); nothing marks a value safe.

use std::sync::OnceLock;

use minijinja::Environment;

/// The one stylesheet (served at `/ui/salve.css`; no CDN, no build step).
pub const STYLESHEET: &str = include_str!("../../../templates/ui/salve.css");

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../../templates/ui/base.html")),
    (
        "login.html",
        include_str!("../../../templates/ui/login.html"),
    ),
    (
        "message.html",
        include_str!("../../../templates/ui/message.html"),
    ),
    (
        "incidents.html",
        include_str!("../../../templates/ui/incidents.html"),
    ),
    (
        "incident.html",
        include_str!("../../../templates/ui/incident.html"),
    ),
    (
        "breakers.html",
        include_str!("../../../templates/ui/breakers.html"),
    ),
    (
        "pauses.html",
        include_str!("../../../templates/ui/pauses.html"),
    ),
    (
        "approvals.html",
        include_str!("../../../templates/ui/approvals.html"),
    ),
    ("gaps.html", include_str!("../../../templates/ui/gaps.html")),
];

fn environment() -> &'static Environment<'static> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = Environment::new();
        environment.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            environment
                .add_template(name, source)
                .expect("the web UI's templates are valid (tested)");
        }
        environment
    })
}

/// Renders template `name` with `context`.
pub fn render(name: &str, context: minijinja::Value) -> Result<String, minijinja::Error> {
    environment().get_template(name)?.render(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    /// Every template renders with an empty context (a filter or test missing from
    /// minijinja's features fails only at render time).
    #[test]
    fn every_template_renders() {
        for (name, _) in TEMPLATES {
            let page = render(name, context! {}).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!page.is_empty(), "{name}");
        }
        let gaps = context! { gaps => vec![context! { alertname => "A", link => "/ui/x" }] };
        render("gaps.html", gaps).unwrap();
    }

    #[test]
    fn templates_compile_and_escape_alert_values() {
        let html = render(
            "message.html",
            context! { title => "<script>x</script>", text => "a & b" },
        )
        .unwrap();
        assert!(
            html.contains("&lt;script&gt;x&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("a &amp; b"));
        assert!(!html.contains("<script>"));
    }
}
