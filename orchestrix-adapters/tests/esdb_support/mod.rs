//! What the EventSourcingDB test files share: running one test against a
//! test server that offers API v1 only and one that offers API v2 only.

/// For each `async fn name(options: TestServerOptions)` named, a test
/// `v1::name` against a server that offers API v1 only and a test
/// `v2::name` against one that offers API v2 only.
macro_rules! for_both_apis {
    ($($name:ident),* $(,)?) => {
        mod v1 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(orchestrix_esdb_test_server::TestServerOptions::default()).await;
                }
            )*
        }
        mod v2 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(orchestrix_esdb_test_server::TestServerOptions::v2_only()).await;
                }
            )*
        }
    };
}
pub(crate) use for_both_apis;
