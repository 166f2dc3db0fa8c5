//! What the AI sees: the room's system prompt and as much recent history as fits a budget
//! of entries and characters. Pure, so that the budget rules are unit-tested natively.

use crate::protocol::{Entry, truncate_chars};

/// One message of the conversation sent to the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextMessage {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    pub content: String,
}

/// How an entry reads to the AI: user entries as `"{name}: {text}"` (role user), so the
/// model can tell speakers apart; the AI's own entries as their text (role assistant).
pub fn entry_message(entry: &Entry) -> ContextMessage {
    if entry.is_assistant() {
        ContextMessage {
            role: "assistant",
            content: entry.text.clone(),
        }
    } else {
        ContextMessage {
            role: "user",
            content: format!("{}: {}", entry.name, entry.text),
        }
    }
}

/// Builds the conversation: the system prompt, then history oldest first.
///
/// `newest_first` is the room's most recent entries, newest first. Entries are taken from
/// the newest back while at most `max_messages` are taken and their contents add up to at
/// most `max_chars` characters; the first one that does not fit ends the walk, so the
/// context is always an unbroken run of the latest entries. The newest entry (the question
/// being asked) is always included, cut to `max_chars` if it alone is longer.
pub fn build_context(
    system_prompt: &str,
    newest_first: &[Entry],
    max_messages: usize,
    max_chars: usize,
) -> Vec<ContextMessage> {
    let mut taken: Vec<ContextMessage> = Vec::new();
    let mut used = 0usize;
    for entry in newest_first.iter().take(max_messages) {
        let mut message = entry_message(entry);
        let len = message.content.chars().count();
        if used + len > max_chars {
            if taken.is_empty() {
                message.content = truncate_chars(&message.content, max_chars);
                taken.push(message);
            }
            break;
        }
        used += len;
        taken.push(message);
    }
    let mut out = Vec::with_capacity(taken.len() + 1);
    if !system_prompt.trim().is_empty() {
        out.push(ContextMessage {
            role: "system",
            content: system_prompt.to_string(),
        });
    }
    out.extend(taken.into_iter().rev());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ROLE_ASSISTANT, ROLE_USER};

    fn user(id: u64, name: &str, text: &str) -> Entry {
        Entry {
            id,
            name: name.into(),
            role: ROLE_USER.into(),
            text: text.into(),
            ts: id,
            stopped: false,
        }
    }

    fn ai(id: u64, text: &str) -> Entry {
        Entry {
            id,
            name: "AI".into(),
            role: ROLE_ASSISTANT.into(),
            text: text.into(),
            ts: id,
            stopped: false,
        }
    }

    fn contents(messages: &[ContextMessage]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|m| (m.role.to_string(), m.content.clone()))
            .collect()
    }

    #[test]
    fn system_then_history_oldest_first() {
        let newest_first = vec![
            user(3, "bob", "@ai and you?"),
            ai(2, "Hello!"),
            user(1, "alice", "hi"),
        ];
        let ctx = build_context("Be nice.", &newest_first, 20, 8000);
        assert_eq!(
            contents(&ctx),
            vec![
                ("system".into(), "Be nice.".into()),
                ("user".into(), "alice: hi".into()),
                ("assistant".into(), "Hello!".into()),
                ("user".into(), "bob: @ai and you?".into()),
            ]
        );
    }

    #[test]
    fn message_budget() {
        let newest_first: Vec<Entry> = (1..=30)
            .rev()
            .map(|i| user(i, "u", &i.to_string()))
            .collect();
        let ctx = build_context("s", &newest_first, 20, 8000);
        assert_eq!(ctx.len(), 21);
        assert_eq!(ctx[1].content, "u: 11");
        assert_eq!(ctx[20].content, "u: 30");
    }

    #[test]
    fn character_budget_keeps_the_newest_unbroken_run() {
        // Contents are "u: xxxxx" = 8 characters each.
        let newest_first = vec![
            user(4, "u", "44444"),
            user(3, "u", "33333"),
            user(2, "u", "2"),
            user(1, "u", "11111"),
        ];
        // 8 + 8 = 16 fits, the third (4 chars) would too, but stop at 20: 8+8+4 = 20 fits,
        // then the fourth does not.
        let ctx = build_context("s", &newest_first, 20, 20);
        assert_eq!(
            contents(&ctx)[1..],
            [
                ("user".to_string(), "u: 2".to_string()),
                ("user".into(), "u: 33333".into()),
                ("user".into(), "u: 44444".into()),
            ]
        );
        // At 19 the third no longer fits, and the walk stops there.
        let ctx = build_context("s", &newest_first, 20, 19);
        assert_eq!(ctx.len(), 3);
        assert_eq!(ctx[1].content, "u: 33333");
    }

    #[test]
    fn the_question_is_always_sent() {
        let newest_first = vec![
            user(2, "bob", "@ai a very long question"),
            user(1, "a", "x"),
        ];
        let ctx = build_context("s", &newest_first, 20, 10);
        assert_eq!(
            contents(&ctx)[1..],
            [("user".to_string(), "bob: @ai a".to_string())]
        );
    }

    #[test]
    fn empty_system_prompt_is_left_out() {
        let ctx = build_context("  ", &[user(1, "a", "b")], 20, 100);
        assert_eq!(ctx.len(), 1);
        assert_eq!(ctx[0].role, "user");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let newest_first = vec![user(2, "é", "éé"), user(1, "é", "é")];
        // "é: éé" is 5 characters, "é: é" is 4.
        assert_eq!(build_context("s", &newest_first, 20, 9).len(), 3);
        assert_eq!(build_context("s", &newest_first, 20, 8).len(), 2);
    }
}
