//! Checks on user input, run alike by the browser (to answer at once) and
//! the server (which never trusts the browser).

use super::{
    v2::MAX_TOPIC_CHARS, ApiError, ErrorCode, MAX_BODY_CHARS, MAX_DISPLAY_NAME_CHARS,
    MAX_EMAIL_CHARS, MAX_PASSWORD_BYTES, MAX_ROOM_NAME_CHARS, MIN_PASSWORD_CHARS,
};

/// Checks a display name and returns it trimmed.
pub fn validate_display_name(name: &str) -> Result<String, ApiError> {
    validate_name(name, MAX_DISPLAY_NAME_CHARS, "Display name")
}

/// Checks a room name and returns it trimmed.
pub fn validate_room_name(name: &str) -> Result<String, ApiError> {
    let name = validate_name(name, MAX_ROOM_NAME_CHARS, "Room name")?;
    // Room names appear in URLs (/rooms/<name>): a slash would split the
    // path, browsers resolve "." and ".." segments away, and leptos_router
    // percent-decodes a path parameter twice when rendering on the server,
    // so a '%' could name another room after a reload.
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '%')) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("Room name cannot contain '{c}'."),
        ));
    }
    if name.chars().all(|c| c == '.') {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            "Room name cannot be only dots.",
        ));
    }
    Ok(name)
}

fn validate_name(name: &str, max: usize, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} cannot be empty."),
        ));
    }
    if name.chars().count() > max {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} must be at most {max} characters."),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidName,
            format!("{what} cannot contain control characters."),
        ));
    }
    Ok(name.to_owned())
}

/// The fold that makes room names unique ignoring case: trimmed, then
/// lower-cased. Stored as `rooms.name_key`; changing it would orphan every
/// stored key.
pub fn room_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// Checks a room topic and returns it trimmed. A topic may be empty (no
/// topic); it is one line, so control characters (U+0000 included, which
/// PostgreSQL cannot store) are refused.
pub fn validate_topic(topic: &str) -> Result<String, ApiError> {
    let topic = topic.trim();
    let chars = topic.chars().count();
    if chars > MAX_TOPIC_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidTopic,
            format!("Topic is {chars} characters long; the limit is {MAX_TOPIC_CHARS}."),
        ));
    }
    if topic.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidTopic,
            "Topic cannot contain control characters.",
        ));
    }
    Ok(topic.to_owned())
}

/// Checks a message body. Bodies are kept as typed (no trimming), but one
/// that is only white space counts as empty. U+0000 is refused (with
/// `bad_frame`: no client sends it by accident) because PostgreSQL cannot
/// store it, and both stores must answer alike.
pub fn validate_body(body: &str) -> Result<(), ApiError> {
    if body.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "Message cannot be empty.",
        ));
    }
    if body.contains('\0') {
        return Err(ApiError::new(
            ErrorCode::BadFrame,
            "Message cannot contain the character U+0000.",
        ));
    }
    let chars = body.chars().count();
    if chars > MAX_BODY_CHARS {
        return Err(ApiError::new(
            ErrorCode::BodyTooLong,
            format!("Message is {chars} characters long; the limit is {MAX_BODY_CHARS}."),
        ));
    }
    Ok(())
}

/// Checks an email address and returns it trimmed. Deliberately loose (one
/// `@` with something on both sides, no spaces): the address is an account
/// name here, never mailed to.
pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let bad = |why: &str| Err(ApiError::new(ErrorCode::InvalidAccount, why));
    if email.is_empty() {
        return bad("Email cannot be empty.");
    }
    if email.chars().count() > MAX_EMAIL_CHARS {
        return bad("Email is too long.");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(email.to_owned())
        }
        _ => bad("That does not look like an email address."),
    }
}

/// Checks a new password's length (in characters, at most
/// [`MAX_PASSWORD_BYTES`] bytes).
pub fn validate_new_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::new(
            ErrorCode::InvalidAccount,
            format!("Password must be at least {MIN_PASSWORD_CHARS} characters."),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::new(
            ErrorCode::InvalidAccount,
            format!("Password must be at most {MAX_PASSWORD_BYTES} bytes."),
        ));
    }
    Ok(())
}

/// Checks that a `client_id` is a UUID, and returns it in canonical form.
pub fn validate_client_id(client_id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(client_id)
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| ApiError::new(ErrorCode::BadClientId, "client_id must be a UUID."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(validate_display_name("  ann ").unwrap(), "ann");
        assert_eq!(
            validate_display_name("   ").unwrap_err().code,
            ErrorCode::InvalidName
        );
        assert!(validate_display_name(&"é".repeat(32)).is_ok());
        assert!(validate_display_name(&"é".repeat(33)).is_err());
        assert!(validate_room_name(&"r".repeat(64)).is_ok());
        assert!(validate_room_name(&"r".repeat(65)).is_err());
        assert!(validate_room_name("a/b").is_err());
        assert!(validate_room_name("..").is_err());
        assert!(validate_room_name("50% off").is_err());
        assert!(validate_room_name("...").is_err());
        assert!(validate_room_name("a.b").is_ok());
    }

    #[test]
    fn bodies_are_bounded_in_characters() {
        assert_eq!(validate_body(" \n").unwrap_err().code, ErrorCode::EmptyBody);
        assert!(validate_body(&"ü".repeat(MAX_BODY_CHARS)).is_ok());
        assert_eq!(
            validate_body(&"ü".repeat(MAX_BODY_CHARS + 1))
                .unwrap_err()
                .code,
            ErrorCode::BodyTooLong
        );
    }

    #[test]
    fn emails_and_passwords_are_checked() {
        assert_eq!(validate_email(" a@b.c ").unwrap(), "a@b.c");
        for bad in ["", "ab", "@b", "a@", "a b@c", "a@b@c"] {
            assert_eq!(
                validate_email(bad).unwrap_err().code,
                ErrorCode::InvalidAccount,
                "{bad}"
            );
        }
        assert!(validate_new_password("1234567").is_err());
        assert!(validate_new_password("12345678").is_ok());
        assert!(validate_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn client_ids_must_be_uuids() {
        let id = "6F9619FF-8B86-D011-B42D-00C04FC964FF";
        assert_eq!(
            validate_client_id(id).unwrap(),
            "6f9619ff-8b86-d011-b42d-00c04fc964ff"
        );
        assert!(validate_client_id("nope").is_err());
    }

    #[test]
    fn nul_is_refused_in_bodies_names_and_topics() {
        assert_eq!(validate_body("a\0b").unwrap_err().code, ErrorCode::BadFrame);
        assert!(
            validate_body("a\u{1}b\tc\n").is_ok(),
            "other controls are text"
        );
        assert_eq!(
            validate_room_name("a\0b").unwrap_err().code,
            ErrorCode::InvalidName
        );
        assert_eq!(
            validate_display_name("a\0b").unwrap_err().code,
            ErrorCode::InvalidName
        );
        assert_eq!(
            validate_topic("a\0b").unwrap_err().code,
            ErrorCode::InvalidTopic
        );
    }

    #[test]
    fn topics_are_trimmed_bounded_and_may_be_empty() {
        assert_eq!(validate_topic("  Plans  ").unwrap(), "Plans");
        assert_eq!(validate_topic("   ").unwrap(), "");
        assert!(validate_topic(&"é".repeat(MAX_TOPIC_CHARS)).is_ok());
        assert_eq!(
            validate_topic(&"é".repeat(MAX_TOPIC_CHARS + 1))
                .unwrap_err()
                .code,
            ErrorCode::InvalidTopic
        );
        assert_eq!(
            validate_topic("two\nlines").unwrap_err().code,
            ErrorCode::InvalidTopic
        );
    }

    #[test]
    fn room_keys_fold_case_and_outer_space() {
        assert_eq!(room_key("  Team Chat "), "team chat");
        assert_eq!(room_key("CAFÉ"), room_key("café"));
        assert_ne!(room_key("team  chat"), room_key("team chat"));
    }
}
