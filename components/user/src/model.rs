//! Domain types of the user service, validation of its inputs and its JSON output shapes.
//!
//! Everything here is plain Rust (no capability calls), so it is unit-tested natively.

use platform_guest::errors::{fields, FieldError, Validation};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Username length bounds, in characters.
pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 50;
/// Minimum password length, in characters.
pub const PASSWORD_MIN: usize = 6;
/// bcrypt reads only the first 72 bytes of a password: a longer one is refused rather than
/// silently cut.
pub const PASSWORD_MAX_BYTES: usize = 72;

/// The message of the design's custom password validator (pydantic prefixes "Value error, ").
pub const PASSWORD_UPPERCASE_MSG: &str =
    "Value error, Password must contain at least one uppercase letter";

/// A user as clients see it: `{"id", "username", "is_active", "created_at", "updated_at"}`.
/// It has no password field, so no response can ever leak one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_active: bool,
    /// RFC 3339 UTC, as the database produced it.
    pub created_at: String,
    pub updated_at: String,
}

/// A user together with its bcrypt hash, as the login needs it. Never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub user: User,
    pub hashed_password: String,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("user", &self.user)
            .field("hashed_password", &"<redacted>")
            .finish()
    }
}

/// A validated registration: `POST /register` and `POST /users`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl NewUser {
    /// Validates `{"username", "password"}` like the design's pydantic model, reporting
    /// every failing field at once (in field order: username, then password).
    pub fn from_json(body: &Map<String, Value>) -> Result<NewUser, Vec<FieldError>> {
        let mut validation = Validation::new();
        let username =
            validation.check(fields::string(body, "username", USERNAME_MIN, USERNAME_MAX));
        let password = validation.check(match body.get("password") {
            Some(value) => password_value(value),
            None => Err(FieldError::missing(
                &["body", "password"],
                Value::Object(body.clone()),
            )),
        });
        validation.finish()?;
        match (username, password) {
            (Some(username), Some(password)) => Ok(NewUser { username, password }),
            // finish() succeeded, so both fields were recorded as valid.
            _ => unreachable!("validation passed without values"),
        }
    }
}

/// A password: a string of at least 6 characters (pydantic's constraint errors first), then
/// the design's custom validator: at least one uppercase letter.
pub fn password_value(value: &Value) -> Result<String, FieldError> {
    let password = fields::string_value(value, "password", PASSWORD_MIN, usize::MAX)?;
    if password.len() > PASSWORD_MAX_BYTES {
        return Err(FieldError::new(
            "string_too_long",
            &["body", "password"],
            format!("String should have at most {PASSWORD_MAX_BYTES} bytes"),
            value.clone(),
        )
        .with_ctx(json!({ "max_length": PASSWORD_MAX_BYTES })));
    }
    if !password.chars().any(char::is_uppercase) {
        // FastAPI serialises the ValueError in `ctx.error` as an empty object.
        return Err(FieldError::new(
            "value_error",
            &["body", "password"],
            PASSWORD_UPPERCASE_MSG,
            value.clone(),
        )
        .with_ctx(json!({ "error": {} })));
    }
    Ok(password)
}

/// Username and password of a login attempt (not validated beyond presence: a wrong one is a 401).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How a login body is encoded, decided by its `content-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginEncoding {
    /// `application/json` (or any `+json` type).
    Json,
    /// `application/x-www-form-urlencoded`: the OAuth2 password flow.
    Form,
    /// `multipart/form-data` with its boundary (FastAPI's `Form` fields accept it too).
    Multipart(String),
    /// No (or an unknown) content type: JSON if the body is a JSON object, else a form.
    Sniff,
}

impl LoginEncoding {
    pub fn from_content_type(content_type: Option<&str>) -> LoginEncoding {
        let Some(content_type) = content_type else {
            return LoginEncoding::Sniff;
        };
        let mut parts = content_type.split(';');
        let mime = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/x-www-form-urlencoded" => LoginEncoding::Form,
            "multipart/form-data" => {
                let boundary = parts.find_map(|param| {
                    let (key, value) = param.split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("boundary")
                        .then(|| value.trim().trim_matches('"').to_string())
                });
                match boundary {
                    Some(boundary) if !boundary.is_empty() => LoginEncoding::Multipart(boundary),
                    // Without a boundary no field can be read: every field is missing.
                    _ => LoginEncoding::Form,
                }
            }
            "application/json" => LoginEncoding::Json,
            other if other.ends_with("+json") => LoginEncoding::Json,
            _ => LoginEncoding::Sniff,
        }
    }
}

/// Parses the body of `POST /login` (form, multipart or JSON) into credentials, or the
/// 422 field errors: `username` and `password` are required, `grant_type` if present must
/// be `password` (as in FastAPI's `OAuth2PasswordRequestForm`).
pub fn parse_login(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Credentials, Vec<FieldError>> {
    match LoginEncoding::from_content_type(content_type) {
        LoginEncoding::Json => credentials_from_json(&json_object(body).map_err(|e| vec![e])?),
        LoginEncoding::Form => credentials_from_form(&form_pairs(body)),
        LoginEncoding::Multipart(boundary) => {
            credentials_from_form(&multipart_pairs(body, &boundary))
        }
        LoginEncoding::Sniff => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => credentials_from_json(&object),
            _ => credentials_from_form(&form_pairs(body)),
        },
    }
}

const GRANT_TYPE_PATTERN: &str = "^password$";

fn grant_type_error(value: &Value) -> FieldError {
    FieldError::new(
        "string_pattern_mismatch",
        &["body", "grant_type"],
        format!("String should match pattern '{GRANT_TYPE_PATTERN}'"),
        value.clone(),
    )
    .with_ctx(json!({ "pattern": GRANT_TYPE_PATTERN }))
}

/// Credentials from a JSON object; a missing field reports the whole body as its input.
pub fn credentials_from_json(body: &Map<String, Value>) -> Result<Credentials, Vec<FieldError>> {
    let mut validation = Validation::new();
    match body.get("grant_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(grant)) if grant == "password" => {}
        Some(value @ Value::String(_)) => validation.push(grant_type_error(value)),
        Some(value) => validation.push(FieldError::new(
            "string_type",
            &["body", "grant_type"],
            "Input should be a valid string",
            value.clone(),
        )),
    }
    let username = validation.check(fields::string(body, "username", 0, usize::MAX));
    let password = validation.check(fields::string(body, "password", 0, usize::MAX));
    validation.finish()?;
    match (username, password) {
        (Some(username), Some(password)) => Ok(Credentials { username, password }),
        _ => unreachable!("validation passed without values"),
    }
}

/// Credentials from decoded form fields. As FastAPI does for `Form` fields, an empty value
/// counts as missing (input `null`), and the last of repeated fields wins.
pub fn credentials_from_form(pairs: &[(String, String)]) -> Result<Credentials, Vec<FieldError>> {
    let field = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let mut validation = Validation::new();
    if let Some(grant) = field("grant_type") {
        if grant != "password" {
            validation.push(grant_type_error(&Value::from(grant)));
        }
    }
    let mut required = |name: &str| match field(name) {
        Some(value) => Some(value.to_string()),
        None => {
            validation.push(FieldError::missing(&["body", name], Value::Null));
            None
        }
    };
    let username = required("username");
    let password = required("password");
    validation.finish()?;
    match (username, password) {
        (Some(username), Some(password)) => Ok(Credentials { username, password }),
        _ => unreachable!("validation passed without values"),
    }
}

/// Decodes an `application/x-www-form-urlencoded` body: `&`-separated `name=value` pairs,
/// `+` as a space, `%XX` escapes (invalid escapes are kept literally, invalid UTF-8 is
/// replaced), a pair without `=` has an empty value, empty pairs are skipped.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|byte| *byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|byte| *byte == b'=') {
                Some(index) => (&pair[..index], &pair[index + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (form_decode(name), form_decode(value))
        })
        .collect()
}

/// `+` -> space, then percent-decoding, then UTF-8 (lossy).
pub fn form_decode(raw: &[u8]) -> String {
    fn hex(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    let mut bytes = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        match raw[index] {
            b'+' => bytes.push(b' '),
            b'%' if index + 2 < raw.len() => match (hex(raw[index + 1]), hex(raw[index + 2])) {
                (Some(high), Some(low)) => {
                    bytes.push(high << 4 | low);
                    index += 2;
                }
                _ => bytes.push(b'%'),
            },
            byte => bytes.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The text fields of a `multipart/form-data` body. Parts without a `name` are skipped.
pub fn multipart_pairs(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    let mut pairs = Vec::new();
    let mut segments = split_bytes(body, delimiter.as_bytes()).into_iter();
    // Whatever precedes the first delimiter is the preamble.
    segments.next();
    for segment in segments {
        if segment.starts_with(b"--") {
            break; // the closing delimiter
        }
        let segment = segment.strip_prefix(b"\r\n").unwrap_or(segment);
        let Some(header_end) = find_bytes(segment, b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&segment[..header_end]);
        let content = &segment[header_end + 4..];
        let content = content.strip_suffix(b"\r\n").unwrap_or(content);
        let name = headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            if !key.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            value.split(';').find_map(|param| {
                let (key, value) = param.split_once('=')?;
                (key.trim() == "name").then(|| value.trim().trim_matches('"').to_string())
            })
        });
        if let Some(name) = name {
            pairs.push((name, String::from_utf8_lossy(content).into_owned()));
        }
    }
    pairs
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn split_bytes<'a>(mut haystack: &'a [u8], needle: &[u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    while let Some(index) = find_bytes(haystack, needle) {
        parts.push(&haystack[..index]);
        haystack = &haystack[index + needle.len()..];
    }
    parts.push(haystack);
    parts
}

/// A JSON object body, or the 422 entry FastAPI gives for an unreadable one (the same shape
/// as `platform_guest::http::Request::json_object`).
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(FieldError::new(
            "model_attributes_type",
            &["body"],
            "Input should be a valid dictionary or object to extract fields from",
            other,
        )),
        Err(error) => Err(FieldError::new(
            "json_invalid",
            &["body"],
            "JSON decode error",
            Value::Object(Map::new()),
        )
        .with_ctx(json!({ "error": error.to_string() }))),
    }
}

/// The body of `POST /validate-token`: `{"token": string}`.
pub fn token_from_json(body: &Map<String, Value>) -> Result<String, Vec<FieldError>> {
    fields::string(body, "token", 0, usize::MAX).map_err(|error| vec![error])
}

/// A successful login: `{"access_token", "token_type": "bearer"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessToken {
    pub access_token: String,
    pub token_type: &'static str,
}

impl AccessToken {
    pub fn bearer(access_token: String) -> AccessToken {
        AccessToken {
            access_token,
            token_type: "bearer",
        }
    }
}

/// Why a token is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidToken {
    Expired,
    Malformed,
    UserNotFound,
    UserInactive,
}

impl InvalidToken {
    pub fn message(self) -> &'static str {
        match self {
            InvalidToken::Expired => "Token has expired",
            InvalidToken::Malformed => "Invalid token",
            InvalidToken::UserNotFound => "User not found",
            InvalidToken::UserInactive => "User is inactive",
        }
    }
}

/// The answer of `POST /validate-token` (always a 200):
/// `{"valid", "username", "user_id", "message"}`, with nulls when not valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenValidation {
    pub valid: bool,
    pub username: Option<String>,
    pub user_id: Option<i64>,
    pub message: &'static str,
}

impl TokenValidation {
    pub fn valid(user: &User) -> TokenValidation {
        TokenValidation {
            valid: true,
            username: Some(user.username.clone()),
            user_id: Some(user.id),
            message: "Token is valid",
        }
    }

    pub fn invalid(reason: InvalidToken) -> TokenValidation {
        TokenValidation {
            valid: false,
            username: None,
            user_id: None,
            message: reason.message(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().expect("an object").clone()
    }

    fn register(value: Value) -> Result<NewUser, Vec<FieldError>> {
        NewUser::from_json(&object(value))
    }

    fn kinds(errors: &[FieldError]) -> Vec<(&'static str, Vec<Value>)> {
        errors.iter().map(|e| (e.kind, e.loc.clone())).collect()
    }

    #[test]
    fn valid_registration() {
        let user = register(json!({"username": "alice", "password": "Secret1"})).unwrap();
        assert_eq!(user.username, "alice");
        assert_eq!(user.password, "Secret1");
        // Unknown fields are ignored, like pydantic's default.
        assert!(register(json!({"username": "bob", "password": "Abcdef", "email": "x"})).is_ok());
    }

    #[test]
    fn passwords_bcrypt_would_cut_are_refused() {
        let longest = format!("S{}", "e".repeat(PASSWORD_MAX_BYTES - 1));
        assert!(register(json!({"username": "alice", "password": longest})).is_ok());
        let errors =
            register(json!({"username": "alice", "password": format!("{longest}x")})).unwrap_err();
        assert_eq!(
            kinds(&errors),
            [("string_too_long", vec![json!("body"), json!("password")])]
        );
        // Bytes, not characters: 25 three-byte characters are 75 bytes.
        let wide = format!("S{}", "€".repeat(25));
        assert!(register(json!({"username": "alice", "password": wide})).is_err());
    }

    #[test]
    fn username_bounds_count_characters() {
        assert!(register(json!({"username": "abc", "password": "Secret"})).is_ok());
        assert!(register(json!({"username": "a".repeat(50), "password": "Secret"})).is_ok());
        assert!(register(json!({"username": "ééé", "password": "Secret"})).is_ok());

        let short = register(json!({"username": "ab", "password": "Secret"})).unwrap_err();
        assert_eq!(
            short[0].to_json(),
            json!({"type": "string_too_short", "loc": ["body", "username"],
                   "msg": "String should have at least 3 characters", "input": "ab",
                   "ctx": {"min_length": 3}})
        );
        let long = register(json!({"username": "a".repeat(51), "password": "Secret"})).unwrap_err();
        assert_eq!(long[0].kind, "string_too_long");
        assert_eq!(long[0].msg, "String should have at most 50 characters");
        assert_eq!(long[0].ctx, Some(json!({"max_length": 50})));

        let number = register(json!({"username": 123, "password": "Secret"})).unwrap_err();
        assert_eq!(number[0].kind, "string_type");
    }

    #[test]
    fn password_rules() {
        let short = register(json!({"username": "alice", "password": "Ab1"})).unwrap_err();
        assert_eq!(
            kinds(&short),
            vec![("string_too_short", vec![json!("body"), json!("password")])]
        );
        assert_eq!(short[0].msg, "String should have at least 6 characters");
        assert_eq!(short[0].ctx, Some(json!({"min_length": 6})));

        let lower = register(json!({"username": "alice", "password": "secret1"})).unwrap_err();
        assert_eq!(
            lower[0].to_json(),
            json!({"type": "value_error", "loc": ["body", "password"],
                   "msg": "Value error, Password must contain at least one uppercase letter",
                   "input": "secret1", "ctx": {"error": {}}})
        );
        // Length is checked before the custom validator, like pydantic does.
        let both = register(json!({"username": "alice", "password": "abc"})).unwrap_err();
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].kind, "string_too_short");

        assert!(register(json!({"username": "alice", "password": "ÄBCDEF"})).is_ok());
        assert_eq!(
            register(json!({"username": "alice", "password": 123456})).unwrap_err()[0].kind,
            "string_type"
        );
        assert_eq!(
            register(json!({"username": "alice", "password": null})).unwrap_err()[0].kind,
            "string_type"
        );
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let errors = register(json!({"username": "ab", "password": "lowercase"})).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("string_too_short", vec![json!("body"), json!("username")]),
                ("value_error", vec![json!("body"), json!("password")]),
            ]
        );

        let missing = register(json!({})).unwrap_err();
        assert_eq!(
            missing.iter().map(FieldError::to_json).collect::<Vec<_>>(),
            vec![
                json!({"type": "missing", "loc": ["body", "username"], "msg": "Field required", "input": {}}),
                json!({"type": "missing", "loc": ["body", "password"], "msg": "Field required", "input": {}}),
            ]
        );
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_pairs(b"username=j%C3%BCrgen+x&password=P%40ss+w%2Brd%26&empty=&flag&&"),
            vec![
                ("username".to_string(), "jürgen x".to_string()),
                ("password".to_string(), "P@ss w+rd&".to_string()),
                ("empty".to_string(), String::new()),
                ("flag".to_string(), String::new()),
            ]
        );
        // Invalid escapes stay literal; invalid UTF-8 is replaced; '=' in a value is kept.
        assert_eq!(form_decode(b"100%"), "100%");
        assert_eq!(form_decode(b"%zz%4"), "%zz%4");
        assert_eq!(form_decode(b"%ff"), "\u{fffd}");
        assert_eq!(
            form_pairs(b"a=b=c"),
            vec![("a".to_string(), "b=c".to_string())]
        );
        assert_eq!(form_pairs(b""), Vec::<(String, String)>::new());
    }

    #[test]
    fn login_from_form() {
        let form = Some("application/x-www-form-urlencoded");
        let creds = parse_login(
            form,
            b"grant_type=password&username=alice&password=Se+cret%21",
        )
        .unwrap();
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password, "Se cret!");

        let errors = parse_login(form, b"username=&scope=").unwrap_err();
        assert_eq!(
            errors.iter().map(FieldError::to_json).collect::<Vec<_>>(),
            vec![
                json!({"type": "missing", "loc": ["body", "username"], "msg": "Field required", "input": null}),
                json!({"type": "missing", "loc": ["body", "password"], "msg": "Field required", "input": null}),
            ]
        );

        let grant = parse_login(form, b"grant_type=client&username=a&password=b").unwrap_err();
        assert_eq!(grant[0].kind, "string_pattern_mismatch");
        assert_eq!(grant[0].ctx, Some(json!({"pattern": "^password$"})));

        // Content type parameters and case do not matter.
        let creds = parse_login(
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            b"username=bob&password=X",
        )
        .unwrap();
        assert_eq!(creds.username, "bob");
    }

    #[test]
    fn login_from_json() {
        let creds = parse_login(
            Some("application/json"),
            br#"{"username": "alice", "password": "Secret1"}"#,
        )
        .unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("alice", "Secret1")
        );

        let errors = parse_login(Some("application/json"), br#"{"username": 5}"#).unwrap_err();
        assert_eq!(
            kinds(&errors),
            vec![
                ("string_type", vec![json!("body"), json!("username")]),
                ("missing", vec![json!("body"), json!("password")]),
            ]
        );
        assert_eq!(errors[1].input, json!({"username": 5}));

        let invalid = parse_login(Some("application/json"), b"username=a").unwrap_err();
        assert_eq!(invalid[0].kind, "json_invalid");
        let array = parse_login(Some("application/json"), b"[]").unwrap_err();
        assert_eq!(array[0].kind, "model_attributes_type");
    }

    #[test]
    fn login_without_content_type_tries_json_then_form() {
        let json_body = parse_login(None, br#"{"username": "a", "password": "b"}"#).unwrap();
        assert_eq!(json_body.username, "a");
        let form_body = parse_login(None, b"username=c&password=d").unwrap();
        assert_eq!(
            (form_body.username.as_str(), form_body.password.as_str()),
            ("c", "d")
        );
        let neither = parse_login(Some("text/plain"), b"").unwrap_err();
        assert_eq!(neither.len(), 2);
    }

    #[test]
    fn login_from_multipart() {
        let content_type = "multipart/form-data; boundary=\"XyZ\"";
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\nContent-Type: text/plain\r\n\r\nSe\r\ncret\r\n\
--XyZ--\r\n";
        let creds = parse_login(Some(content_type), body).unwrap();
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password, "Se\r\ncret");
        assert_eq!(
            LoginEncoding::from_content_type(Some("multipart/form-data")),
            LoginEncoding::Form
        );
        assert!(parse_login(Some("multipart/form-data"), body).is_err());
    }

    #[test]
    fn token_body() {
        assert_eq!(
            token_from_json(&object(json!({"token": "abc"}))),
            Ok("abc".to_string())
        );
        assert_eq!(
            token_from_json(&object(json!({}))).unwrap_err()[0].kind,
            "missing"
        );
        assert_eq!(
            token_from_json(&object(json!({"token": 1}))).unwrap_err()[0].kind,
            "string_type"
        );
    }

    fn alice() -> User {
        User {
            id: 7,
            username: "alice".into(),
            is_active: true,
            created_at: "2026-11-25T10:00:00.123456Z".into(),
            updated_at: "2026-11-25T10:00:00.123456Z".into(),
        }
    }

    #[test]
    fn user_json_shape() {
        assert_eq!(
            serde_json::to_value(alice()).unwrap(),
            json!({"id": 7, "username": "alice", "is_active": true,
                   "created_at": "2026-11-25T10:00:00.123456Z",
                   "updated_at": "2026-11-25T10:00:00.123456Z"})
        );
        let stored = StoredUser {
            user: alice(),
            hashed_password: "$2b$12$secret".into(),
        };
        assert!(!format!("{stored:?}").contains("secret"));
        let new = NewUser {
            username: "a".into(),
            password: "Hunter2".into(),
        };
        assert!(!format!("{new:?}").contains("Hunter2"));
    }

    #[test]
    fn token_responses() {
        assert_eq!(
            serde_json::to_value(AccessToken::bearer("t".into())).unwrap(),
            json!({"access_token": "t", "token_type": "bearer"})
        );
        assert_eq!(
            serde_json::to_value(TokenValidation::valid(&alice())).unwrap(),
            json!({"valid": true, "username": "alice", "user_id": 7, "message": "Token is valid"})
        );
        for (reason, message) in [
            (InvalidToken::Expired, "Token has expired"),
            (InvalidToken::Malformed, "Invalid token"),
            (InvalidToken::UserNotFound, "User not found"),
            (InvalidToken::UserInactive, "User is inactive"),
        ] {
            assert_eq!(
                serde_json::to_value(TokenValidation::invalid(reason)).unwrap(),
                json!({"valid": false, "username": null, "user_id": null, "message": message})
            );
        }
    }
}
