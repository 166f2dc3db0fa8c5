//! The room's web page: one self-contained HTML file (`page.html`, inline CSS and JS, no
//! external resources). The room fills in the class settings the page needs (length
//! limits, the AI's name) when it serves it.

use serde_json::json;

use crate::config::ClassConfig;

/// The page as written, with the class defaults in its `CONFIG` object.
pub const TEMPLATE: &str = include_str!("page.html");

/// Marks both ends of the page's `CONFIG` object literal.
const MARKER: &str = "/*CONFIG*/";

/// The page with `CONFIG` set from the class settings.
pub fn render(class: &ClassConfig) -> String {
    let config = json!({
        "maxNameLen": class.max_name_len,
        "maxTextLen": class.max_text_len,
        "aiName": class.ai_name,
    });
    // Inside a <script>, `</script>` or `<!--` in a string would end or confuse it.
    let config = config.to_string().replace('<', "\\u003c");
    let Some(start) = TEMPLATE.find(MARKER) else {
        return TEMPLATE.to_string();
    };
    let after = start + MARKER.len();
    let Some(len) = TEMPLATE[after..].find(MARKER) else {
        return TEMPLATE.to_string();
    };
    let end = after + len + MARKER.len();
    format!("{}{config}{}", &TEMPLATE[..start], &TEMPLATE[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ai_name: &str) -> ClassConfig {
        let mut c = ClassConfig::from_lookup(|_| None);
        c.ai_name = ai_name.into();
        c.max_name_len = 12;
        c
    }

    #[test]
    fn fills_in_the_config() {
        let page = render(&class("Robo"));
        assert!(
            page.contains(r#"const CONFIG = {"aiName":"Robo","maxNameLen":12,"maxTextLen":2000};"#)
        );
        assert!(!page.contains(MARKER));
    }

    #[test]
    fn config_cannot_break_out_of_the_script() {
        let page = render(&class("</script><script>alert(1)//"));
        assert_eq!(page.matches("</script>").count(), 1);
        assert!(page.contains(r#""aiName":"\u003c/script>\u003cscript>alert(1)//""#));
    }

    #[test]
    fn template_defaults_match_the_class_defaults() {
        let c = ClassConfig::from_lookup(|_| None);
        let page = render(&c);
        let template_config = &TEMPLATE[TEMPLATE.find(MARKER).unwrap() + MARKER.len()..];
        let template_config = &template_config[..template_config.find(MARKER).unwrap()];
        let a: serde_json::Value = serde_json::from_str(template_config).unwrap();
        let start = page.find("const CONFIG = ").unwrap() + "const CONFIG = ".len();
        let b: serde_json::Value =
            serde_json::from_str(&page[start..start + page[start..].find(';').unwrap()]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn page_is_self_contained_and_has_the_test_hooks() {
        for id in [
            "name-input",
            "join-button",
            "message-input",
            "send-button",
            "messages",
            "presence",
            "status",
        ] {
            assert!(TEMPLATE.contains(&format!("id=\"{id}\"")), "missing #{id}");
        }
        for class in ["'message'", "'ai-stream'", "responseId", "dataset.id"] {
            assert!(TEMPLATE.contains(class), "missing {class}");
        }
        // No external resources: nothing is loaded from another origin.
        for needle in [
            "http://",
            "https://",
            "src=\"",
            "<link rel=\"stylesheet\"",
            "@import",
        ] {
            let hits: Vec<_> = TEMPLATE
                .match_indices(needle)
                .filter(|(i, _)| !TEMPLATE[i.saturating_sub(60)..*i].contains("xmlns="))
                .collect();
            assert!(hits.is_empty(), "external resource? {needle}");
        }
    }
}
