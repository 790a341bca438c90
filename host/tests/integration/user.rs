//! The user service's contract (`../shared/contract/rest-api.md`), row by row.

use crate::support::{Platform, Test};
use serde_json::Value;

pub fn tests() -> Vec<Test> {
    crate::tests![me_returns_the_caller]
}

async fn me_returns_the_caller(platform: &'static Platform) -> anyhow::Result<()> {
    let user = platform.new_user().await?;
    let response = platform
        .http()
        .get(platform.url("user", "/me"))
        .header("authorization", user.bearer())
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await?;
    assert_eq!(me["id"], user.id);
    assert_eq!(me["username"], user.username.as_str());
    assert_eq!(me["is_active"], true);
    assert!(me.get("password").is_none() && me.get("hashed_password").is_none());
    Ok(())
}
