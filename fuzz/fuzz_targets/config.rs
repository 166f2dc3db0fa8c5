//! The config parser: `Config::parse` (and `validate` on what it accepts) never panics,
//! whatever the text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lodge_core::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        let _ = config.validate("fuzz");
        for class in config.classes.values() {
            for value in class.settings.values() {
                let _ = lodge_core::config::setting_text(value);
            }
        }
    }
});
