//! The outbox's copy in `localStorage`, one key per user (browser only).

use super::state::OutboxEntry;

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

fn key(user: i64) -> String {
    format!("chat.outbox.{user}")
}

pub fn load(user: i64) -> Vec<OutboxEntry> {
    storage()
        .and_then(|s| s.get_item(&key(user)).ok()?)
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Reads, changes and writes back (other tabs may have changed it).
pub fn update(user: i64, change: impl FnOnce(&mut Vec<OutboxEntry>)) {
    let Some(storage) = storage() else { return };
    let mut entries = load(user);
    change(&mut entries);
    let _ = if entries.is_empty() {
        storage.remove_item(&key(user))
    } else {
        match serde_json::to_string(&entries) {
            Ok(text) => storage.set_item(&key(user), &text),
            Err(_) => Ok(()),
        }
    };
}
