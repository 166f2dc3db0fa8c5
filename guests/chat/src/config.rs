//! Class-wide settings (from the operator's config, `[classes.chat.settings]`) and the
//! per-room settings edited over `GET`/`PUT /settings`. Pure: the host lookup is passed
//! in as a function so that parsing and defaults are unit-tested natively.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The system prompt when neither the room nor the operator set one. `{room}` is replaced
/// by the room's name.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are the AI assistant in the chat room \"{room}\". \
Several people talk here; each of their messages starts with the speaker's name and a colon. \
When someone asks you something, answer them helpfully, briefly and in plain text, in the \
language they used. Do not start your reply with your own name.";

/// The longest per-room system prompt `PUT /settings` accepts, in characters.
pub const MAX_SYSTEM_PROMPT_LEN: usize = 4000;

/// Class-wide settings, read once per activation.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassConfig {
    /// `max_text_len`: longest message, in characters (default 2000).
    pub max_text_len: usize,
    /// `max_name_len`: longest user name, in characters (default 32).
    pub max_name_len: usize,
    /// `presence_list_max`: rooms with more people than this get presence as a count
    /// (announced as it changes by 5 %) and a list of at most this many names, instead of
    /// join/leave notices and the whole list to everyone on every join (default 100).
    pub presence_list_max: usize,
    /// `ai_context_messages`: at most this many recent entries go to the AI (default 20).
    pub ai_context_messages: u32,
    /// `ai_context_chars`: and at most this many characters of them (default 8000).
    pub ai_context_chars: usize,
    /// `system_prompt`: the default system prompt of every room.
    pub system_prompt: String,
    /// `ai_name`: the name AI entries carry (default `AI`).
    pub ai_name: String,
    /// `ai_model`: the model to ask for (the provider's default when unset).
    pub ai_model: Option<String>,
    /// `ai_temperature`.
    pub ai_temperature: Option<f32>,
    /// `ai_max_tokens`.
    pub ai_max_tokens: Option<u32>,
}

/// The default cap on an AI reply, in tokens (`ai_max_tokens`; 0 lifts it).
pub const DEFAULT_AI_MAX_TOKENS: u32 = 1024;

/// The most recent entries ever sent as context, whatever `ai_context_messages` says.
pub const MAX_CONTEXT_MESSAGES: u32 = 500;

impl ClassConfig {
    /// Reads every setting through `lookup`; missing or unparsable values take the default.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ClassConfig {
        fn num<T: std::str::FromStr>(
            lookup: &impl Fn(&str) -> Option<String>,
            key: &str,
        ) -> Option<T> {
            lookup(key).and_then(|v| v.trim().parse().ok())
        }
        let text = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        ClassConfig {
            max_text_len: num(&lookup, "max_text_len").unwrap_or(2000usize).max(1),
            max_name_len: num(&lookup, "max_name_len").unwrap_or(32usize).max(1),
            presence_list_max: num(&lookup, "presence_list_max").unwrap_or(100usize).max(1),
            ai_context_messages: num(&lookup, "ai_context_messages")
                .unwrap_or(20u32)
                .clamp(1, MAX_CONTEXT_MESSAGES),
            ai_context_chars: num(&lookup, "ai_context_chars").unwrap_or(8000usize).max(1),
            system_prompt: text("system_prompt").unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.into()),
            ai_name: text("ai_name").unwrap_or_else(|| "AI".into()),
            ai_model: text("ai_model"),
            ai_temperature: num::<f32>(&lookup, "ai_temperature").filter(|t| t.is_finite()),
            // A reply has a length cap unless a room's operator lifts it (0): models left
            // unbounded wrote pages for "a short poem", and filled the next replies' context.
            ai_max_tokens: match num::<u32>(&lookup, "ai_max_tokens") {
                Some(0) => None,
                Some(n) => Some(n),
                None => Some(DEFAULT_AI_MAX_TOKENS),
            },
        }
    }
}

/// What a room stores under [`ROOM_SETTINGS_KEY`]: only what differs from the class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// The room's own system prompt; the class default when `None`.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Whether the AI answers every message, not only those starting with `@ai`.
    #[serde(default)]
    pub answer_all: bool,
}

/// The storage key of the room's settings.
pub const ROOM_SETTINGS_KEY: &str = "room:settings";

/// What `GET /settings` returns: the settings in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EffectiveSettings {
    pub system_prompt: String,
    pub answer_all: bool,
}

impl RoomSettings {
    /// The settings in force, given the class default prompt.
    pub fn effective(&self, class: &ClassConfig) -> EffectiveSettings {
        EffectiveSettings {
            system_prompt: self
                .system_prompt
                .clone()
                .unwrap_or_else(|| class.system_prompt.clone()),
            answer_all: self.answer_all,
        }
    }

    /// Applies a `PUT /settings` body: a JSON object with any of `system_prompt` (a string;
    /// empty or `null` restores the class default) and `answer_all` (a boolean). Fields
    /// not given keep their value. The error says what was wrong; nothing is applied then.
    pub fn apply_update(&self, body: &[u8]) -> Result<RoomSettings, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err(
                "the body must be a JSON object like {\"system_prompt\": \"...\", \"answer_all\": false}"
                    .into(),
            );
        };
        let mut next = self.clone();
        for (key, value) in map {
            match key.as_str() {
                "system_prompt" => {
                    next.system_prompt = match value {
                        Value::Null => None,
                        Value::String(s) => {
                            let s = s.trim();
                            let len = s.chars().count();
                            if len > MAX_SYSTEM_PROMPT_LEN {
                                return Err(format!(
                                    "system_prompt is too long: {len} characters, at most {MAX_SYSTEM_PROMPT_LEN} are allowed"
                                ));
                            }
                            if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                                return Err(
                                    "system_prompt must not contain control characters other than newlines and tabs"
                                        .into(),
                                );
                            }
                            (!s.is_empty()).then(|| s.to_string())
                        }
                        _ => {
                            return Err(
                                "system_prompt must be a string (or null for the default)".into()
                            );
                        }
                    }
                }
                "answer_all" => {
                    next.answer_all = value
                        .as_bool()
                        .ok_or_else(|| "answer_all must be true or false".to_string())?;
                }
                other => {
                    return Err(format!(
                        "unknown setting {}: the settings are system_prompt and answer_all",
                        Value::String(other.to_string())
                    ));
                }
            }
        }
        Ok(next)
    }
}

/// The system prompt with `{room}` replaced by the room's name.
pub fn render_system_prompt(prompt: &str, room: &str) -> String {
    prompt.replace("{room}", room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> ClassConfig {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClassConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]);
        assert_eq!(c.max_text_len, 2000);
        assert_eq!(c.max_name_len, 32);
        assert_eq!(c.ai_context_messages, 20);
        assert_eq!(c.ai_context_chars, 8000);
        assert_eq!(c.system_prompt, DEFAULT_SYSTEM_PROMPT);
        assert_eq!(c.ai_name, "AI");
        assert_eq!(c.ai_model, None);
        assert_eq!(c.ai_temperature, None);
        assert_eq!(c.ai_max_tokens, Some(DEFAULT_AI_MAX_TOKENS));
    }

    #[test]
    fn overrides_and_bad_values() {
        let c = config(&[
            ("max_text_len", " 100 "),
            ("max_name_len", "0"),
            ("ai_context_messages", "100000"),
            ("ai_context_chars", "nope"),
            ("system_prompt", "Be terse."),
            ("ai_name", "  "),
            ("ai_model", "llama3"),
            ("ai_temperature", "0.5"),
            ("ai_max_tokens", "256"),
        ]);
        assert_eq!(c.max_text_len, 100);
        assert_eq!(c.max_name_len, 1);
        assert_eq!(c.ai_context_messages, MAX_CONTEXT_MESSAGES);
        assert_eq!(c.ai_context_chars, 8000);
        assert_eq!(c.system_prompt, "Be terse.");
        assert_eq!(c.ai_name, "AI");
        assert_eq!(c.ai_model.as_deref(), Some("llama3"));
        assert_eq!(c.ai_temperature, Some(0.5));
        assert_eq!(c.ai_max_tokens, Some(256));
    }

    #[test]
    fn room_settings_update() {
        let class = config(&[]);
        let room = RoomSettings::default();
        assert_eq!(
            room.effective(&class),
            EffectiveSettings {
                system_prompt: DEFAULT_SYSTEM_PROMPT.into(),
                answer_all: false
            }
        );
        let room = room
            .apply_update(br#"{"system_prompt":"  You are a pirate. ","answer_all":true}"#)
            .unwrap();
        assert_eq!(room.system_prompt.as_deref(), Some("You are a pirate."));
        assert!(room.answer_all);
        // A partial update keeps the rest.
        let room2 = room.apply_update(br#"{"answer_all":false}"#).unwrap();
        assert_eq!(room2.system_prompt.as_deref(), Some("You are a pirate."));
        assert!(!room2.answer_all);
        // Empty or null restores the default.
        assert_eq!(
            room.apply_update(br#"{"system_prompt":""}"#)
                .unwrap()
                .system_prompt,
            None
        );
        assert_eq!(
            room.apply_update(br#"{"system_prompt":null}"#)
                .unwrap()
                .system_prompt,
            None
        );
        // Multi-line prompts are fine.
        assert!(
            room.apply_update(b"{\"system_prompt\":\"a\\nb\\tc\"}")
                .is_ok()
        );
    }

    #[test]
    fn room_settings_refusals() {
        let room = RoomSettings::default();
        let err = |b: &[u8]| room.apply_update(b).unwrap_err();
        assert!(err(b"{").starts_with("invalid JSON"));
        assert!(err(b"[]").contains("JSON object"));
        assert!(err(br#"{"answer_all":"yes"}"#).contains("true or false"));
        assert!(err(br#"{"system_prompt":5}"#).contains("must be a string"));
        assert!(err(br#"{"colour":"red"}"#).contains("unknown setting \"colour\""));
        assert!(err(b"{\"system_prompt\":\"a\\u0007\"}").contains("control"));
        let long = format!(
            r#"{{"system_prompt":"{}"}}"#,
            "x".repeat(MAX_SYSTEM_PROMPT_LEN + 1)
        );
        assert!(err(long.as_bytes()).contains("too long"));
    }

    #[test]
    fn stored_settings_tolerate_missing_fields() {
        let s: RoomSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, RoomSettings::default());
    }

    #[test]
    fn renders_room_name() {
        assert_eq!(render_system_prompt("Room {room}!", "lobby"), "Room lobby!");
    }
}
