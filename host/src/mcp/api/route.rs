//! The routes of the plain HTTP API, parsed from a request's method and path.
//!
//! Invariants: every path segment is percent-decoded exactly once (a malformed escape is
//! no route); an empty segment (`/api/tools/`) is no route; a path that names a route with
//! the wrong method is [`RouteError::MethodNotAllowed`] with the method it takes, any other
//! path under [`API_PATH`] is [`RouteError::NotFound`].

use axum::http::Method;

use crate::uris;

/// Where the API is mounted.
pub const API_PATH: &str = "/api";

/// Every route, for the `not_found` answer.
pub const ROUTES: [&str; 5] = [
    "GET /api/tools",
    "POST /api/tools/{name}",
    "POST /api",
    "GET /api/jobs/{prompt_id}",
    "GET /api/images/{prompt_id}/{filename}",
];

/// A parsed API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/tools`: the tool definitions.
    ListTools,
    /// `POST /api/tools/{name}`: the body is the tool's arguments.
    CallTool(String),
    /// `POST /api`: the body is `{"tool": name, "params": {...}}`.
    Envelope,
    /// `GET /api/jobs/{prompt_id}`: `get_workflow_status`.
    Job(String),
    /// `GET /api/images/{prompt_id}/{filename}`: a job's PNG.
    Image {
        /// The job.
        prompt_id: String,
        /// One of its image files.
        filename: String,
    },
}

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No route has this path.
    NotFound,
    /// The path is a route, but it takes another method.
    MethodNotAllowed {
        /// The method it takes.
        allow: Method,
    },
}

impl Route {
    /// The route of `method` on `path` (the full path, starting with [`API_PATH`]).
    pub fn parse(method: &Method, path: &str) -> Result<Route, RouteError> {
        let Some(rest) = path.strip_prefix(API_PATH) else {
            return Err(RouteError::NotFound);
        };
        let (route, allow) = match rest {
            "" | "/" => (Route::Envelope, Method::POST),
            _ => {
                let rest = rest.strip_prefix('/').ok_or(RouteError::NotFound)?;
                let segments = rest
                    .split('/')
                    .map(|s| uris::decode(s).filter(|s| !s.is_empty()))
                    .collect::<Option<Vec<String>>>()
                    .ok_or(RouteError::NotFound)?;
                Self::from_segments(segments)?
            }
        };
        if *method != allow {
            return Err(RouteError::MethodNotAllowed { allow });
        }
        Ok(route)
    }

    fn from_segments(segments: Vec<String>) -> Result<(Route, Method), RouteError> {
        let found = match segments.as_slice() {
            [tools] if tools == "tools" => (Route::ListTools, Method::GET),
            [tools, name] if tools == "tools" => (Route::CallTool(name.clone()), Method::POST),
            [jobs, id] if jobs == "jobs" => (Route::Job(id.clone()), Method::GET),
            [images, id, file] if images == "images" => (
                Route::Image {
                    prompt_id: id.clone(),
                    filename: file.clone(),
                },
                Method::GET,
            ),
            _ => return Err(RouteError::NotFound),
        };
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, path: &str) -> Result<Route, RouteError> {
        Route::parse(&method, path)
    }

    #[test]
    fn every_route_parses_with_its_method() {
        assert_eq!(parse(Method::GET, "/api/tools"), Ok(Route::ListTools));
        assert_eq!(
            parse(Method::POST, "/api/tools/list_workflows"),
            Ok(Route::CallTool("list_workflows".into()))
        );
        assert_eq!(parse(Method::POST, "/api"), Ok(Route::Envelope));
        assert_eq!(parse(Method::POST, "/api/"), Ok(Route::Envelope));
        assert_eq!(
            parse(Method::GET, "/api/jobs/abc-1"),
            Ok(Route::Job("abc-1".into()))
        );
        assert_eq!(
            parse(Method::GET, "/api/images/abc-1/ComfyUI_00001_.png"),
            Ok(Route::Image {
                prompt_id: "abc-1".into(),
                filename: "ComfyUI_00001_.png".into()
            })
        );
    }

    #[test]
    fn segments_are_decoded_once() {
        assert_eq!(
            parse(Method::GET, "/api/images/a%20b/x%2F..%2Fy.png"),
            Ok(Route::Image {
                prompt_id: "a b".into(),
                filename: "x/../y.png".into()
            })
        );
        assert_eq!(
            parse(Method::GET, "/api/jobs/%2541"),
            Ok(Route::Job("%41".into()))
        );
        assert_eq!(
            parse(Method::GET, "/api/jobs/%zz"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn wrong_methods_name_the_right_one() {
        let post = RouteError::MethodNotAllowed {
            allow: Method::POST,
        };
        let get = RouteError::MethodNotAllowed { allow: Method::GET };
        assert_eq!(parse(Method::GET, "/api"), Err(post.clone()));
        assert_eq!(parse(Method::GET, "/api/tools/x"), Err(post));
        assert_eq!(parse(Method::POST, "/api/tools"), Err(get.clone()));
        assert_eq!(parse(Method::DELETE, "/api/jobs/x"), Err(get.clone()));
        assert_eq!(parse(Method::PUT, "/api/images/a/b"), Err(get));
    }

    #[test]
    fn other_paths_are_not_found() {
        for path in [
            "/apix",
            "/api/tools/",
            "/api/tools/a/b",
            "/api/jobs",
            "/api/jobs/",
            "/api/images/only-id",
            "/api/images/a/b/c",
            "/api/images//b",
            "/api/nothing",
            "/api//tools",
            "/mcp",
        ] {
            assert_eq!(
                parse(Method::GET, path),
                Err(RouteError::NotFound),
                "{path}"
            );
            assert_eq!(
                parse(Method::POST, path),
                Err(RouteError::NotFound),
                "{path}"
            );
        }
    }
}
