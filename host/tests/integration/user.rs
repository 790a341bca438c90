//! The user service's contract (`../shared/contract/rest-api.md`), row by row.
//!
//! Also holds the helpers the product tests share: sending a request and reading the
//! answer once ([`send`]), FastAPI-shaped 422 checks ([`assert_422`]), RFC 3339 UTC
//! timestamps ([`assert_utc_timestamp`]) and forged tokens ([`rejected_tokens`]).

use crate::support::{assert_utc_timestamp, unique, Platform, Test, TestUser};
use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};

pub fn tests() -> Vec<Test> {
    crate::tests![
        register_creates_an_active_user_without_secrets,
        users_route_creates_a_user_like_register,
        password_is_stored_only_as_a_bcrypt_hash,
        taken_username_is_400_naming_it_on_both_routes,
        concurrent_registrations_of_one_name_create_one_user,
        username_length_is_checked_in_characters,
        invalid_registrations_are_422_and_store_nothing,
        login_with_a_form_issues_a_bearer_token,
        login_with_json_issues_a_bearer_token,
        login_refuses_wrong_password_and_unknown_user_with_401,
        login_refuses_an_inactive_user_with_401,
        login_without_credentials_is_422,
        issued_token_carries_the_contract_claims,
        validate_token_accepts_a_valid_token,
        validate_token_refuses_forged_expired_and_garbage_tokens,
        validate_token_refuses_a_deleted_user,
        validate_token_refuses_an_inactive_user,
        validate_token_without_a_token_is_422,
        me_returns_the_caller,
        me_accepts_the_bearer_scheme_case_insensitively,
        me_refuses_missing_forged_expired_and_garbage_tokens,
        me_refuses_a_deleted_user,
        me_refuses_an_inactive_user,
    ]
}

// ---------- shared helpers (also used by `product`) ----------

/// A response read once: status, the bearer challenge, the raw text and the JSON (or null).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub content_type: Option<String>,
    pub text: String,
    pub body: Value,
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

/// Sends `request` and reads the whole answer.
pub async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let www_authenticate = header("www-authenticate");
    let content_type = header("content-type");
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        www_authenticate,
        content_type,
        text,
        body,
    })
}

/// A 401 with `www-authenticate: Bearer` and a string `detail`.
pub fn assert_401(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply}");
    assert_eq!(
        reply.www_authenticate.as_deref(),
        Some("Bearer"),
        "{what}: challenge of {reply}"
    );
    assert!(reply.body["detail"].is_string(), "{what}: {reply}");
}

/// A FastAPI 422: `detail` is a list of `{loc, msg, type}`, one of them at `loc`
/// (and of type `kind` when given).
pub fn assert_422(reply: &Reply, loc: &[&str], kind: Option<&str>, what: &str) {
    assert_eq!(reply.status, 422, "{what}: {reply}");
    let errors = reply.body["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: detail is not a list: {reply}"));
    assert!(!errors.is_empty(), "{what}: {reply}");
    for error in errors {
        assert!(
            error["loc"].is_array() && error["msg"].is_string() && error["type"].is_string(),
            "{what}: FastAPI shape of {error}"
        );
    }
    let expected = json!(loc);
    assert!(
        errors
            .iter()
            .any(|error| error["loc"] == expected && kind.is_none_or(|kind| error["type"] == kind)),
        "{what}: expected an error at {expected} of type {kind:?} in {reply}"
    );
}

/// base64url without padding, as JWTs use.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An HS256 token with `claims`, signed with `secret`.
pub fn signed_token(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encoding a token")
}

/// Claims like the user service's for `user`, expiring `seconds` from now.
pub fn claims(user: &TestUser, seconds: i64) -> Value {
    json!({
        "sub": user.username,
        "user_id": user.id,
        "exp": chrono::Utc::now().timestamp() + seconds,
    })
}

/// Tokens for `user` that must all be refused: `(why, token)`.
pub fn rejected_tokens(platform: &Platform, user: &TestUser) -> Vec<(&'static str, String)> {
    let header_none = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(claims(user, 1800).to_string().as_bytes());
    let real_parts: Vec<&str> = user.token.split('.').collect();
    // The real token's signature over a payload naming someone else.
    let tampered_claims = json!({
        "sub": format!("{}x", user.username),
        "user_id": user.id + 1,
        "exp": chrono::Utc::now().timestamp() + 1800,
    });
    let tampered = format!(
        "{}.{}.{}",
        real_parts[0],
        base64url(tampered_claims.to_string().as_bytes()),
        real_parts[2]
    );
    vec![
        ("garbage", "not-a-token".to_string()),
        ("three garbage parts", "aaa.bbb.ccc".to_string()),
        (
            "wrong signature",
            signed_token("another-secret-entirely", &claims(user, 1800)),
        ),
        (
            "alg none, empty signature",
            format!("{header_none}.{payload}."),
        ),
        (
            "alg none, the real signature",
            format!("{header_none}.{payload}.{}", real_parts[2]),
        ),
        ("tampered payload", tampered),
        (
            "expired",
            signed_token(&platform.jwt_secret, &claims(user, -60)),
        ),
        // Well signed, but naming a user that does not exist: the id with another name.
        (
            "another name for the id",
            signed_token(&platform.jwt_secret, &tampered_claims_same_id(user)),
        ),
    ]
}

fn tampered_claims_same_id(user: &TestUser) -> Value {
    json!({
        "sub": format!("{}_other", user.username),
        "user_id": user.id,
        "exp": chrono::Utc::now().timestamp() + 1800,
    })
}

/// POSTs a JSON body to the user service.
async fn post_user(platform: &Platform, path: &str, body: &Value) -> anyhow::Result<Reply> {
    send(platform.http().post(platform.url("user", path)).json(body)).await
}

async fn validate(platform: &Platform, token: &str) -> anyhow::Result<Reply> {
    post_user(platform, "/validate-token", &json!({ "token": token })).await
}

async fn me(platform: &Platform, authorization: Option<&str>) -> anyhow::Result<Reply> {
    let mut request = platform.http().get(platform.url("user", "/me"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    send(request).await
}

async fn login_form(platform: &Platform, username: &str, password: &str) -> anyhow::Result<Reply> {
    send(
        platform
            .http()
            .post(platform.url("user", "/login"))
            .form(&[("username", username), ("password", password)]),
    )
    .await
}

async fn login_json(platform: &Platform, username: &str, password: &str) -> anyhow::Result<Reply> {
    post_user(
        platform,
        "/login",
        &json!({ "username": username, "password": password }),
    )
    .await
}

/// `{"id", "username", "is_active", "created_at", "updated_at"}` and nothing else.
fn assert_user(user: &Value, username: &str, what: &str) {
    let mut keys: Vec<&str> = user
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {user}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["created_at", "id", "is_active", "updated_at", "username"],
        "{what}: {user}"
    );
    assert!(
        user["id"].as_i64().is_some_and(|id| id > 0),
        "{what}: {user}"
    );
    assert_eq!(user["username"], username, "{what}");
    assert_eq!(user["is_active"], true, "{what}");
    let created = assert_utc_timestamp(&user["created_at"], what);
    let updated = assert_utc_timestamp(&user["updated_at"], what);
    assert!(
        updated >= created,
        "{what}: updated_at before created_at: {user}"
    );
}

/// A valid `{"valid": false}` answer.
fn assert_invalid(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {reply}");
    assert_eq!(reply.body["valid"], false, "{what}: {reply}");
    assert!(
        reply.body.get("username").is_some_and(Value::is_null),
        "{what}: {reply}"
    );
    assert!(
        reply.body.get("user_id").is_some_and(Value::is_null),
        "{what}: {reply}"
    );
    assert!(reply.body["message"].is_string(), "{what}: {reply}");
}

async fn delete_user(platform: &Platform, user: &TestUser) -> anyhow::Result<()> {
    let mut db = platform.database_connection("user").await?;
    let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(user.id)
        .execute(&mut db)
        .await?
        .rows_affected();
    anyhow::ensure!(deleted == 1, "deleting user {}", user.id);
    Ok(())
}

async fn deactivate_user(platform: &Platform, user: &TestUser) -> anyhow::Result<()> {
    let mut db = platform.database_connection("user").await?;
    let updated = sqlx::query("UPDATE users SET is_active = false WHERE id = $1")
        .bind(user.id)
        .execute(&mut db)
        .await?
        .rows_affected();
    anyhow::ensure!(updated == 1, "deactivating user {}", user.id);
    Ok(())
}

/// A user made invalid afterwards: deleted (`true`) or deactivated (`false`).
pub async fn disabled_user(platform: &Platform, delete: bool) -> anyhow::Result<TestUser> {
    let user = platform.new_user().await?;
    if delete {
        delete_user(platform, &user).await?;
    } else {
        deactivate_user(platform, &user).await?;
    }
    Ok(user)
}

// ---------- POST /register, POST /users ----------

async fn register_creates_an_active_user_without_secrets(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let username = unique("reg");
    let reply = post_user(
        platform,
        "/register",
        &json!({ "username": username, "password": "Secret123" }),
    )
    .await?;
    assert_eq!(reply.status, 201, "{reply}");
    assert!(
        reply
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:?}"
    );
    assert_user(&reply.body, &username, "register");
    assert!(
        !reply.text.contains("Secret123") && !reply.text.contains("$2"),
        "{reply}"
    );

    // Fields beyond the contract's are ignored: a client cannot register an inactive user
    // or choose its id.
    let sneaky = unique("sneaky");
    let body = json!({ "username": sneaky, "password": "Secret123", "is_active": false, "id": 424242, "hashed_password": "x" });
    let extra = post_user(platform, "/register", &body).await?;
    assert_eq!(extra.status, 201, "{extra}");
    assert_user(&extra.body, &sneaky, "register with extra fields");
    assert_ne!(extra.body["id"], 424242);
    assert_eq!(
        login_json(platform, &sneaky, "Secret123").await?.status,
        200
    );

    // The new user can log in and is who /me says.
    let login = login_form(platform, &username, "Secret123").await?;
    assert_eq!(login.status, 200, "{login}");
    let token = login.body["access_token"]
        .as_str()
        .context("access_token")?;
    let me = me(platform, Some(&format!("Bearer {token}"))).await?;
    assert_eq!(me.status, 200, "{me}");
    assert_eq!(me.body, reply.body, "/me shows the registered user");
    Ok(())
}

async fn users_route_creates_a_user_like_register(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let username = unique("users");
    let reply = post_user(
        platform,
        "/users",
        &json!({ "username": username, "password": "Secret123" }),
    )
    .await?;
    assert_eq!(reply.status, 201, "{reply}");
    assert_user(&reply.body, &username, "POST /users");
    let login = login_json(platform, &username, "Secret123").await?;
    assert_eq!(login.status, 200, "{login}");
    Ok(())
}

async fn password_is_stored_only_as_a_bcrypt_hash(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let mut db = platform.database_connection("user").await?;
    let hash: String = sqlx::query_scalar("SELECT hashed_password FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(&mut db)
        .await?;
    assert_ne!(hash, user.password);
    assert!(
        !hash.contains(&user.password),
        "the hash contains the password"
    );
    assert!(
        hash.len() == 60 && hash.starts_with("$2"),
        "not a bcrypt hash: {hash}"
    );
    Ok(())
}

async fn taken_username_is_400_naming_it_on_both_routes(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    for (first, second) in [
        ("/register", "/register"),
        ("/register", "/users"),
        ("/users", "/register"),
    ] {
        let username = unique("taken");
        let body = json!({ "username": username, "password": "Secret123" });
        let reply = post_user(platform, first, &body).await?;
        assert_eq!(reply.status, 201, "{first}: {reply}");
        // Again, even with another password.
        let again = json!({ "username": username, "password": "Other1234" });
        let reply = post_user(platform, second, &again).await?;
        assert_eq!(reply.status, 400, "{first} then {second}: {reply}");
        let detail = reply.body["detail"]
            .as_str()
            .context("detail is a string")?;
        assert!(
            detail.contains(&username),
            "detail names the username: {detail}"
        );
        // The first user's password still works; the second was not stored.
        assert_eq!(
            login_form(platform, &username, "Secret123").await?.status,
            200
        );
        assert_eq!(
            login_form(platform, &username, "Other1234").await?.status,
            401
        );
    }
    Ok(())
}

async fn concurrent_registrations_of_one_name_create_one_user(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let username = unique("race");
    let attempts = (0..8).map(|i| {
        let path = if i % 2 == 0 { "/register" } else { "/users" };
        let body = json!({ "username": username, "password": format!("Secret{i}A") });
        async move { post_user(platform, path, &body).await }
    });
    let replies = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = Vec::new();
    for reply in replies {
        let reply = reply?;
        if reply.status == 400 {
            assert!(
                reply.body["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&username)),
                "{reply}"
            );
        }
        statuses.push(reply.status);
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [201, 400, 400, 400, 400, 400, 400, 400],
        "exactly one registration wins"
    );
    let mut db = platform.database_connection("user").await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE username = $1")
        .bind(&username)
        .fetch_one(&mut db)
        .await?;
    assert_eq!(rows, 1);
    Ok(())
}

/// 3..=50 characters (not bytes): the bounds are accepted, one past them refused.
async fn username_length_is_checked_in_characters(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let accepted = [
        id[..3].to_string(),
        format!("{}{}", &id[..12], "x".repeat(38)),
        // 50 characters, 88 bytes.
        format!("{}{}", &id[..12], "ü".repeat(38)),
        // 3 characters, 6 bytes.
        format!("é{}", &id[3..5]),
    ];
    for username in &accepted {
        let reply = post_user(
            platform,
            "/register",
            &json!({ "username": username, "password": "Secret123" }),
        )
        .await?;
        assert_eq!(
            reply.status,
            201,
            "`{username}` ({} chars): {reply}",
            username.chars().count()
        );
        assert_user(&reply.body, username, username);
        assert_eq!(
            login_json(platform, username, "Secret123").await?.status,
            200,
            "{username}"
        );
    }
    let refused = [
        (id[..2].to_string(), "string_too_short"),
        (String::new(), "string_too_short"),
        (
            format!("{}{}", &id[..12], "x".repeat(39)),
            "string_too_long",
        ),
        (
            format!("{}{}", &id[..12], "ü".repeat(39)),
            "string_too_long",
        ),
    ];
    for (username, kind) in &refused {
        for path in ["/register", "/users"] {
            let reply = post_user(
                platform,
                path,
                &json!({ "username": username, "password": "Secret123" }),
            )
            .await?;
            assert_422(
                &reply,
                &["body", "username"],
                Some(kind),
                &format!("{path} `{username}`"),
            );
        }
    }
    Ok(())
}

async fn invalid_registrations_are_422_and_store_nothing(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let cases: Vec<(&str, Value, &[&str], Option<&str>)> = vec![
        (
            "password of 5 characters",
            json!({ "password": "Abc12" }),
            &["body", "password"],
            Some("string_too_short"),
        ),
        // 5 characters, 6 bytes: still too short.
        (
            "password of 5 multibyte characters",
            json!({ "password": "Äbc12" }),
            &["body", "password"],
            Some("string_too_short"),
        ),
        (
            "password without an uppercase letter",
            json!({ "password": "secret123" }),
            &["body", "password"],
            Some("value_error"),
        ),
        (
            "missing password",
            json!({}),
            &["body", "password"],
            Some("missing"),
        ),
        (
            "password not a string",
            json!({ "password": 123456 }),
            &["body", "password"],
            Some("string_type"),
        ),
        (
            "username not a string",
            json!({ "username": 12345, "password": "Secret123" }),
            &["body", "username"],
            Some("string_type"),
        ),
        (
            "null username",
            json!({ "password": "Secret123", "username": null }),
            &["body", "username"],
            None,
        ),
    ];
    for path in ["/register", "/users"] {
        for (what, fields, loc, kind) in &cases {
            let username = unique("bad");
            let mut body = json!({ "username": username });
            for (key, value) in fields.as_object().unwrap() {
                body[key] = value.clone();
            }
            let reply = post_user(platform, path, &body).await?;
            assert_422(&reply, loc, *kind, &format!("{path}: {what}"));
            // Nothing was stored: the name is still free.
            if body["username"] == username.as_str() {
                let reply = post_user(
                    platform,
                    path,
                    &json!({ "username": username, "password": "Secret123" }),
                )
                .await?;
                assert_eq!(
                    reply.status, 201,
                    "{path}: {what}: the name stays free: {reply}"
                );
            }
        }
        let reply = post_user(platform, path, &json!({ "password": "Secret123" })).await?;
        assert_422(
            &reply,
            &["body", "username"],
            Some("missing"),
            &format!("{path}: no username"),
        );
        let reply = post_user(platform, path, &json!({})).await?;
        assert_422(
            &reply,
            &["body", "username"],
            Some("missing"),
            &format!("{path}: empty object"),
        );
        assert_422(
            &reply,
            &["body", "password"],
            Some("missing"),
            &format!("{path}: empty object"),
        );
        let reply = send(platform.http().post(platform.url("user", path))).await?;
        assert_eq!(reply.status, 422, "{path}: no body: {reply}");
    }
    Ok(())
}

// ---------- POST /login ----------

fn assert_bearer_token(reply: &Reply, what: &str) -> String {
    assert_eq!(reply.status, 200, "{what}: {reply}");
    assert_eq!(reply.body["token_type"], "bearer", "{what}: {reply}");
    let token = reply.body["access_token"].as_str().unwrap_or_default();
    assert_eq!(token.split('.').count(), 3, "{what}: a JWT: {reply}");
    token.to_string()
}

async fn login_with_a_form_issues_a_bearer_token(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let reply = login_form(platform, &user.username, &user.password).await?;
    let token = assert_bearer_token(&reply, "form login");
    assert_eq!(
        me(platform, Some(&format!("Bearer {token}"))).await?.status,
        200
    );

    // The full OAuth2 password-flow form, as Swagger UI sends it.
    let reply = send(platform.http().post(platform.url("user", "/login")).form(&[
        ("grant_type", "password"),
        ("username", user.username.as_str()),
        ("password", user.password.as_str()),
        ("scope", ""),
        ("client_id", ""),
        ("client_secret", ""),
    ]))
    .await?;
    let token = assert_bearer_token(&reply, "full OAuth2 form");
    assert_eq!(
        me(platform, Some(&format!("Bearer {token}"))).await?.status,
        200
    );
    Ok(())
}

async fn login_with_json_issues_a_bearer_token(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let reply = login_json(platform, &user.username, &user.password).await?;
    let token = assert_bearer_token(&reply, "JSON login");
    let me = me(platform, Some(&format!("Bearer {token}"))).await?;
    assert_eq!(me.status, 200, "{me}");
    assert_eq!(me.body["id"], user.id);
    Ok(())
}

async fn login_refuses_wrong_password_and_unknown_user_with_401(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let unknown = unique("nobody");
    let cases = [
        (
            "wrong password",
            user.username.clone(),
            "Wrong1234".to_string(),
        ),
        (
            "password in another case",
            user.username.clone(),
            user.password.to_lowercase(),
        ),
        ("unknown user", unknown.clone(), user.password.clone()),
    ];
    for (what, username, password) in &cases {
        let form = login_form(platform, username, password).await?;
        assert_401(&form, &format!("form: {what}"));
        assert!(form.body.get("access_token").is_none(), "{form}");
        let json = login_json(platform, username, password).await?;
        assert_401(&json, &format!("JSON: {what}"));
        assert!(json.body.get("access_token").is_none(), "{json}");
    }
    // Unknown user and wrong password are indistinguishable.
    let wrong = login_form(platform, &user.username, "Wrong1234").await?;
    let nobody = login_form(platform, &unknown, "Wrong1234").await?;
    assert_eq!(wrong.body, nobody.body);
    Ok(())
}

async fn login_refuses_an_inactive_user_with_401(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = disabled_user(platform, false).await?;
    let form = login_form(platform, &user.username, &user.password).await?;
    assert_401(&form, "form login of an inactive user");
    assert!(form.body.get("access_token").is_none(), "{form}");
    let json = login_json(platform, &user.username, &user.password).await?;
    assert_401(&json, "JSON login of an inactive user");
    assert!(json.body.get("access_token").is_none(), "{json}");
    // A deleted user cannot log in either.
    let deleted = disabled_user(platform, true).await?;
    assert_401(
        &login_form(platform, &deleted.username, &deleted.password).await?,
        "deleted user",
    );
    Ok(())
}

async fn login_without_credentials_is_422(platform: &'static Platform) -> anyhow::Result<()> {
    let url = platform.url("user", "/login");
    let reply = send(platform.http().post(&url).form(&[("username", "someone")])).await?;
    assert_422(
        &reply,
        &["body", "password"],
        Some("missing"),
        "form without password",
    );
    let reply = send(
        platform
            .http()
            .post(&url)
            .form(&[("password", "Secret123")]),
    )
    .await?;
    assert_422(
        &reply,
        &["body", "username"],
        Some("missing"),
        "form without username",
    );
    let reply = post_user(platform, "/login", &json!({ "username": "someone" })).await?;
    assert_422(
        &reply,
        &["body", "password"],
        Some("missing"),
        "JSON without password",
    );
    Ok(())
}

async fn issued_token_carries_the_contract_claims(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let header = jsonwebtoken::decode_header(&user.token)?;
    assert_eq!(header.alg, Algorithm::HS256);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Value>(
        &user.token,
        &DecodingKey::from_secret(platform.jwt_secret.as_bytes()),
        &validation,
    )
    .context("the token is signed with the platform's secret")?;
    assert_eq!(data.claims["sub"], user.username.as_str());
    assert_eq!(data.claims["user_id"], user.id);
    let lifetime = data.claims["exp"].as_i64().context("exp")? - chrono::Utc::now().timestamp();
    assert!(
        (29 * 60..=30 * 60 + 5).contains(&lifetime),
        "lifetime of 30 minutes, got {lifetime} s"
    );
    Ok(())
}

// ---------- POST /validate-token ----------

async fn validate_token_accepts_a_valid_token(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let reply = validate(platform, &user.token).await?;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.body["valid"], true, "{reply}");
    assert_eq!(reply.body["username"], user.username.as_str());
    assert_eq!(reply.body["user_id"], user.id);
    assert!(reply.body["message"].is_string(), "{reply}");
    // A token the platform's secret signs with the right claims is as good as an issued one.
    let forged = signed_token(&platform.jwt_secret, &claims(&user, 600));
    assert_eq!(validate(platform, &forged).await?.body["valid"], true);
    Ok(())
}

async fn validate_token_refuses_forged_expired_and_garbage_tokens(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let mut tokens = rejected_tokens(platform, &user);
    tokens.push(("empty", String::new()));
    tokens.push(("the bearer header instead of the token", user.bearer()));
    for (what, token) in &tokens {
        let reply = validate(platform, token).await?;
        assert_invalid(&reply, what);
    }
    // The user's own token is still fine.
    assert_eq!(validate(platform, &user.token).await?.body["valid"], true);
    Ok(())
}

async fn validate_token_refuses_a_deleted_user(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    assert_eq!(validate(platform, &user.token).await?.body["valid"], true);
    delete_user(platform, &user).await?;
    assert_invalid(&validate(platform, &user.token).await?, "deleted user");
    Ok(())
}

async fn validate_token_refuses_an_inactive_user(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    assert_eq!(validate(platform, &user.token).await?.body["valid"], true);
    deactivate_user(platform, &user).await?;
    assert_invalid(&validate(platform, &user.token).await?, "inactive user");
    Ok(())
}

async fn validate_token_without_a_token_is_422(platform: &'static Platform) -> anyhow::Result<()> {
    let reply = post_user(platform, "/validate-token", &json!({})).await?;
    assert_422(&reply, &["body", "token"], Some("missing"), "no token");
    let reply = post_user(platform, "/validate-token", &json!({ "tokn": "x" })).await?;
    assert_422(
        &reply,
        &["body", "token"],
        Some("missing"),
        "misspelt field",
    );
    let reply = post_user(platform, "/validate-token", &json!({ "token": null })).await?;
    assert_422(&reply, &["body", "token"], None, "null token");
    let reply = send(
        platform
            .http()
            .post(platform.url("user", "/validate-token")),
    )
    .await?;
    assert_eq!(reply.status, 422, "no body: {reply}");
    Ok(())
}

// ---------- GET /me ----------

async fn me_returns_the_caller(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let reply = me(platform, Some(&user.bearer())).await?;
    assert_eq!(reply.status, 200, "{reply}");
    assert_user(&reply.body, &user.username, "/me");
    assert_eq!(reply.body["id"], user.id);
    assert!(
        !reply.text.contains("password") && !reply.text.contains("$2"),
        "{reply}"
    );
    Ok(())
}

/// FastAPI's `OAuth2PasswordBearer` compares the scheme case-insensitively.
async fn me_accepts_the_bearer_scheme_case_insensitively(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    for scheme in ["bearer", "BEARER"] {
        let reply = me(platform, Some(&format!("{scheme} {}", user.token))).await?;
        assert_eq!(reply.status, 200, "scheme `{scheme}`: {reply}");
        assert_eq!(reply.body["id"], user.id);
    }
    Ok(())
}

async fn me_refuses_missing_forged_expired_and_garbage_tokens(
    platform: &'static Platform,
) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    assert_401(&me(platform, None).await?, "no authorization header");
    assert_401(
        &me(platform, Some("Bearer")).await?,
        "scheme without a token",
    );
    assert_401(&me(platform, Some("Bearer ")).await?, "empty token");
    assert_401(
        &me(platform, Some(&user.token)).await?,
        "token without a scheme",
    );
    assert_401(
        &me(platform, Some(&format!("Basic {}", user.token))).await?,
        "Basic scheme",
    );
    for (what, token) in rejected_tokens(platform, &user) {
        assert_401(&me(platform, Some(&format!("Bearer {token}"))).await?, what);
    }
    assert_eq!(me(platform, Some(&user.bearer())).await?.status, 200);
    Ok(())
}

async fn me_refuses_a_deleted_user(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    assert_eq!(me(platform, Some(&user.bearer())).await?.status, 200);
    delete_user(platform, &user).await?;
    assert_401(&me(platform, Some(&user.bearer())).await?, "deleted user");
    Ok(())
}

async fn me_refuses_an_inactive_user(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    assert_eq!(me(platform, Some(&user.bearer())).await?.status, 200);
    deactivate_user(platform, &user).await?;
    assert_401(&me(platform, Some(&user.bearer())).await?, "inactive user");
    Ok(())
}
