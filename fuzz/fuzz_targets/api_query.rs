//! The api's query-string extractor on every route's parameters: any query
//! is either read or refused with 400 `bad_request`, never a panic.
#![no_main]

use std::fmt::Debug;

use axum::extract::FromRequestParts;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use longrun_api::extract::Params;
use longrun_api::routes::list::ListParams;
use longrun_api::routes::read::{EventParams, PageParams};
use longrun_api::routes::start::StartParams;
use longrun_api::routes::wait::WaitParams;
use longrun_shared::problem::Code;
use serde::de::DeserializeOwned;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

fn read<T: DeserializeOwned + Debug + Send + 'static>(uri: &str) {
    let Ok(request) = Request::get(uri).body(()) else {
        return;
    };
    let (mut parts, ()) = request.into_parts();
    let outcome =
        RUNTIME.with(|runtime| runtime.block_on(Params::<T>::from_request_parts(&mut parts, &())));
    if let Err(err) = outcome {
        assert_eq!(err.problem.code, Code::BadRequest, "{:?}", err.problem);
        assert_eq!(err.problem.status, 400);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let uri = format!("/v1/operations?{query}");
    read::<ListParams>(&uri);
    read::<EventParams>(&uri);
    read::<PageParams>(&uri);
    read::<WaitParams>(&uri);
    read::<StartParams>(&uri);
});
