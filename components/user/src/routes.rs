//! The route table and the HTTP <-> service mapping.
//!
//! [`ROUTES`] is the one list both `routes()` and `handle()` read (see
//! `platform_guest::dispatch`), so the route index the host passes back always selects the
//! handler of the route it matched.
//! Handlers validate their input (422 in FastAPI's shape) before anything touches a
//! capability, call the service, and map its errors to statuses in [`error_response`].
//!
//! `POST /validate-token` is public on purpose: the host calls it to authenticate the
//! requests of every service's protected routes (including this service's `GET /me`).

use crate::identity::HostIdentity;
use crate::log;
use crate::model::{
    parse_login, token_from_json, NewUser, User, PASSWORD_MAX_BYTES, PASSWORD_MIN, USERNAME_MAX,
    USERNAME_MIN,
};
use crate::repository::Repository;
use crate::service::{StoreError, UserError, UserService};
use platform_guest::dispatch::{Answer, Endpoint, RouteTable};
use platform_guest::errors::FieldError;
use platform_guest::http::{self, Identity, Method, Request, Response, Route};
use serde_json::{json, Map, Value};

const USERS_TAG: &str = "users";
const AUTH_TAG: &str = "auth";

/// The route table: `routes()` and `handle()` both read it.
pub const ROUTES: RouteTable = RouteTable::new(&[
    Endpoint::public(register_route, register),
    Endpoint::public(create_user_route, register),
    Endpoint::public(login_route, login),
    Endpoint::public(validate_token_route, validate_token),
    Endpoint::authenticated(me_route, me),
]);

// ---------- route declarations ----------

fn register_route() -> Route {
    http::route(Method::Post, "/register")
        .summary("Register a user")
        .description(
            "Creates an active user. `username`: 3..=50 characters, unique; \
             `password`: at least 6 characters with at least one uppercase letter, \
             stored only as a bcrypt hash. 400 if the username is taken.",
        )
        .tag(USERS_TAG)
        .status(201)
        .body_schema(user_create_schema())
        .response_schema(user_schema())
        .error(400, "The username is already registered")
        .build()
}

fn create_user_route() -> Route {
    http::route(Method::Post, "/users")
        .summary("Create a user")
        .description("The same as `POST /register`.")
        .tag(USERS_TAG)
        .status(201)
        .body_schema(user_create_schema())
        .response_schema(user_schema())
        .error(400, "The username is already registered")
        .build()
}

fn login_route() -> Route {
    http::route(Method::Post, "/login")
        .summary("Log in")
        .description(
            "OAuth2 password flow: `username` and `password` as an \
             `application/x-www-form-urlencoded` form (a JSON object with the same \
             fields is accepted too). Returns a bearer access token; 401 for a wrong \
             username or password, or an inactive user.",
        )
        .tag(AUTH_TAG)
        .body_schema(login_schema())
        .response_schema(json!({
            "title": "Token",
            "type": "object",
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"type": "string", "const": "bearer"},
            },
            "required": ["access_token", "token_type"],
        }))
        .error(401, "Wrong username or password, or an inactive user")
        .build()
}

fn validate_token_route() -> Route {
    http::route(Method::Post, "/validate-token")
        .summary("Validate an access token")
        .description(
            "Always 200: `valid` is true only for a well-signed, unexpired token whose \
             user still exists and is active; otherwise `username` and `user_id` are \
             null and `message` says why. Used by the platform to authenticate \
             requests.",
        )
        .tag(AUTH_TAG)
        .body_schema(token_schema())
        .response_schema(json!({
            "title": "TokenValidation",
            "type": "object",
            "properties": {
                "valid": {"type": "boolean"},
                "username": {"type": ["string", "null"]},
                "user_id": {"type": ["integer", "null"]},
                "message": {"type": "string"},
            },
            "required": ["valid", "username", "user_id", "message"],
        }))
        .build()
}

fn me_route() -> Route {
    http::route(Method::Get, "/me")
        .authenticated()
        .summary("The current user")
        .description("The user the bearer token was issued for.")
        .tag(USERS_TAG)
        .response_schema(user_schema())
        .build()
}

// ---------- request and response schemas (OpenAPI) ----------

fn user_schema() -> Value {
    json!({
        "title": "User",
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "username": {"type": "string"},
            "is_active": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
        "required": ["id", "username", "is_active", "created_at", "updated_at"],
    })
}

fn user_create_schema() -> Value {
    json!({
        "title": "UserCreate",
        "type": "object",
        "properties": {
            "username": {
                "type": "string",
                "minLength": USERNAME_MIN,
                "maxLength": USERNAME_MAX,
                "description": "Unique user name.",
            },
            "password": {
                "type": "string",
                "minLength": PASSWORD_MIN,
                "maxLength": PASSWORD_MAX_BYTES,
                // What JSON Schema can say: printable ASCII with an uppercase letter. Any
                // Unicode password of at most 72 bytes with an uppercase letter is accepted.
                "pattern": "^[ -~]*[A-Z][ -~]*$",
                "format": "password",
                "description": "At least 6 characters, at most 72 bytes (bcrypt reads no more), at least one of them an uppercase letter.",
            },
        },
        "required": ["username", "password"],
    })
}

fn login_schema() -> Value {
    let optional_string = |description: &str| json!({"anyOf": [{"type": "string"}, {"type": "null"}], "description": description});
    json!({
        "title": "Body_login",
        "type": "object",
        "description": "Sent as a form (`application/x-www-form-urlencoded`) or as JSON.",
        "properties": {
            "grant_type": {
                "anyOf": [{"type": "string", "pattern": "^password$"}, {"type": "null"}],
                "description": "OAuth2 grant type; `password` if present.",
            },
            "username": {"type": "string"},
            "password": {"type": "string", "format": "password"},
            "scope": {"type": "string", "default": "", "description": "Ignored."},
            "client_id": optional_string("Ignored."),
            "client_secret": optional_string("Ignored."),
        },
        "required": ["username", "password"],
    })
}

fn token_schema() -> Value {
    json!({
        "title": "TokenValidationRequest",
        "type": "object",
        "properties": {
            "token": {"type": "string", "description": "The access token, without `Bearer `."},
        },
        "required": ["token"],
    })
}

// ---------- handlers ----------

fn service() -> UserService<Repository, HostIdentity> {
    UserService::new(Repository, HostIdentity)
}

fn user_response(status: u16, user: &User) -> Response {
    http::json(status, user)
}

fn register(request: &Request) -> Answer {
    let new = body(request, NewUser::from_json)?;
    let user = service().register(&new).map_err(error_response)?;
    log::info(&format!("registered user {} ({})", user.id, user.username));
    Ok(user_response(201, &user))
}

fn login(request: &Request) -> Answer {
    let credentials = parse_login(request.header("content-type"), &request.body)
        .map_err(|errors| http::validation_error(&errors))?;
    match service().login(&credentials) {
        Ok(token) => Ok(http::json(200, &token)),
        Err(error) => {
            if error.is_unauthorized() {
                log::warn(&format!(
                    "login refused for `{}`: {error}",
                    credentials.username
                ));
            }
            Err(error_response(error))
        }
    }
}

fn validate_token(request: &Request) -> Answer {
    let token = body(request, token_from_json)?;
    let answer = service().validate_token(&token).map_err(error_response)?;
    Ok(http::json(200, &answer))
}

fn me(_: &Request, caller: &Identity) -> Answer {
    let user = service()
        .current_user(caller.user_id)
        .map_err(error_response)?;
    Ok(user_response(200, &user))
}

// ---------- request parsing ----------

/// Validates a JSON object body into an input type, or reports every field error.
type BodyParser<T> = fn(&Map<String, Value>) -> Result<T, Vec<FieldError>>;

/// Reads the body as a JSON object and validates it with `parse`, answering FastAPI's 422
/// for an absent, undecodable or non-object body or for invalid fields.
fn body<T>(request: &Request, parse: BodyParser<T>) -> Result<T, Response> {
    if request.body.is_empty() {
        // FastAPI: a required body that was not sent at all.
        return Err(http::validation_error(&[FieldError::new(
            "missing",
            &["body"],
            "Field required",
            Value::Null,
        )]));
    }
    let object = request.json_object()?;
    parse(&object).map_err(|errors| http::validation_error(&errors))
}

// ---------- errors ----------

/// A 401 with the bearer challenge.
fn unauthorized(detail: &str) -> Response {
    let mut response = http::error(401, detail);
    response
        .headers
        .push(("www-authenticate".into(), "Bearer".into()));
    response
}

/// The response of a service error; 5xx causes go to the log only.
fn error_response(error: UserError) -> Response {
    match &error {
        UserError::Store(StoreError::Unavailable(cause)) => http::unavailable("Database", cause),
        UserError::Store(StoreError::Internal(cause)) => http::internal_error(cause),
        other if other.is_unauthorized() => unauthorized(&other.to_string()),
        other => http::error(other.status(), &other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(request: Request) -> Response {
        ROUTES.handle(&request)
    }

    fn request(route_index: u32, content_type: Option<&str>, body: &[u8]) -> Request {
        Request {
            route_index,
            method: Method::Post,
            path: "/".into(),
            params: Vec::new(),
            query: Vec::new(),
            headers: content_type
                .map(|value| vec![("content-type".to_string(), value.to_string())])
                .unwrap_or_default(),
            body: body.to_vec(),
            caller: None,
            request_id: "req".into(),
        }
    }

    fn json_request(route_index: u32, body: &[u8]) -> Request {
        request(route_index, Some("application/json"), body)
    }

    fn body_json(response: &Response) -> Value {
        serde_json::from_slice(&response.body).unwrap()
    }

    fn detail_types(response: &Response) -> Vec<(String, Value)> {
        body_json(response)["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["type"].as_str().unwrap().to_string(), e["loc"].clone()))
            .collect()
    }

    fn has_bearer_challenge(response: &Response) -> bool {
        response
            .headers
            .contains(&("www-authenticate".to_string(), "Bearer".to_string()))
    }

    #[test]
    fn route_table_matches_the_contract() {
        let table = ROUTES.routes();
        let summary: Vec<_> = table
            .iter()
            .map(|r| {
                (
                    r.method.as_str(),
                    r.path.as_str(),
                    r.requires_auth,
                    r.success_status,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("POST", "/register", false, 201),
                ("POST", "/users", false, 201),
                ("POST", "/login", false, 200),
                ("POST", "/validate-token", false, 200),
                ("GET", "/me", true, 200),
            ]
        );
        for route in &table {
            assert_eq!(route.tags.len(), 1, "{}", route.path);
            assert!(!route.summary.is_empty());
            assert!(!route.description.is_empty());
            let takes_body = matches!(route.method, Method::Post);
            assert_eq!(route.request_schema.is_some(), takes_body, "{}", route.path);
            if let Some(schema) = &route.request_schema {
                let schema: Value = serde_json::from_str(schema).unwrap();
                assert_eq!(schema["type"], "object");
            }
        }
    }

    #[test]
    fn schemas_name_the_required_fields() {
        let create = user_create_schema();
        assert_eq!(create["required"], json!(["username", "password"]));
        assert_eq!(create["properties"]["username"]["minLength"], 3);
        assert_eq!(create["properties"]["username"]["maxLength"], 50);
        assert_eq!(create["properties"]["password"]["minLength"], 6);
        assert_eq!(login_schema()["required"], json!(["username", "password"]));
        assert_eq!(token_schema()["required"], json!(["token"]));
    }

    #[test]
    fn invalid_registrations_are_422_before_any_capability_is_used() {
        for index in [0, 1] {
            let response = handle(json_request(
                index,
                br#"{"username": "ab", "password": "lower"}"#,
            ));
            assert_eq!(response.status, 422);
            assert_eq!(
                detail_types(&response),
                vec![
                    ("string_too_short".into(), json!(["body", "username"])),
                    ("string_too_short".into(), json!(["body", "password"])),
                ]
            );
        }
        let response = handle(json_request(
            0,
            br#"{"username": "alice", "password": "secret1"}"#,
        ));
        assert_eq!(
            body_json(&response)["detail"][0],
            json!({"type": "value_error", "loc": ["body", "password"],
                   "msg": "Value error, Password must contain at least one uppercase letter",
                   "input": "secret1", "ctx": {"error": {}}})
        );
        let response = handle(json_request(1, br#"{}"#));
        assert_eq!(
            detail_types(&response),
            vec![
                ("missing".into(), json!(["body", "username"])),
                ("missing".into(), json!(["body", "password"])),
            ]
        );
        // Malformed JSON, a non-object and no body at all.
        let response = handle(json_request(0, b"{nope"));
        assert_eq!(
            detail_types(&response),
            vec![("json_invalid".into(), json!(["body"]))]
        );
        let response = handle(json_request(0, b"[1]"));
        assert_eq!(
            detail_types(&response),
            vec![("model_attributes_type".into(), json!(["body"]))]
        );
        let response = handle(json_request(0, b""));
        assert_eq!(
            body_json(&response),
            json!({"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": null}]})
        );
    }

    #[test]
    fn login_without_credentials_is_422() {
        let form = Some("application/x-www-form-urlencoded");
        let response = handle(request(2, form, b""));
        assert_eq!(response.status, 422);
        assert_eq!(
            detail_types(&response),
            vec![
                ("missing".into(), json!(["body", "username"])),
                ("missing".into(), json!(["body", "password"])),
            ]
        );
        let response = handle(request(2, form, b"username=alice&grant_type=refresh"));
        assert_eq!(
            detail_types(&response),
            vec![
                (
                    "string_pattern_mismatch".into(),
                    json!(["body", "grant_type"])
                ),
                ("missing".into(), json!(["body", "password"])),
            ]
        );
        let response = handle(json_request(2, br#"{"username": "alice"}"#));
        assert_eq!(
            detail_types(&response),
            vec![("missing".into(), json!(["body", "password"]))]
        );
    }

    #[test]
    fn validate_token_without_a_token_is_422() {
        let response = handle(json_request(3, b"{}"));
        assert_eq!(response.status, 422);
        assert_eq!(
            body_json(&response),
            json!({"detail": [{"type": "missing", "loc": ["body", "token"], "msg": "Field required", "input": {}}]})
        );
        let response = handle(json_request(3, br#"{"token": null}"#));
        assert_eq!(
            detail_types(&response),
            vec![("string_type".into(), json!(["body", "token"]))]
        );
        let response = handle(json_request(3, b""));
        assert_eq!(
            detail_types(&response),
            vec![("missing".into(), json!(["body"]))]
        );
    }

    #[test]
    fn client_errors_map_to_detail_responses() {
        let response = error_response(UserError::UsernameTaken("alice".into()));
        assert_eq!(response.status, 400);
        assert!(!has_bearer_challenge(&response));
        assert_eq!(
            body_json(&response),
            json!({"detail": "Username 'alice' is already registered"})
        );
        for (error, detail) in [
            (
                UserError::InvalidCredentials,
                "Incorrect username or password",
            ),
            (UserError::InactiveUser, "Inactive user"),
            (
                UserError::CredentialsRejected,
                "Could not validate credentials",
            ),
        ] {
            let response = error_response(error);
            assert_eq!(response.status, 401);
            assert!(has_bearer_challenge(&response));
            assert_eq!(body_json(&response), json!({"detail": detail}));
        }
    }

    #[test]
    fn user_responses_carry_the_wire_shape_without_secrets() {
        let user = User {
            id: 1,
            username: "alice".into(),
            is_active: true,
            created_at: "2026-11-25T10:00:00Z".into(),
            updated_at: "2026-11-25T10:00:00Z".into(),
        };
        let response = user_response(201, &user);
        assert_eq!(response.status, 201);
        let body = body_json(&response);
        let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["created_at", "id", "is_active", "updated_at", "username"]
        );
    }
}
