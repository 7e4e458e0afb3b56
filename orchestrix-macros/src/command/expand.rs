//! Generates `AggregateCommand` per method and the aggregate's list of
//! commands (`CommandHandlerBlock`, which the `CommandSet` impl of
//! `#[aggregate]` reads), or `StandaloneCommand` for a free function.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::attr::Requires;
use super::model::{Extra, Handler, Model, Output, Stub};
use crate::common;

pub(crate) fn expand(model: &Model) -> TokenStream {
    match model {
        Model::Impl { krate, item, handlers, stubs } => {
            let aggregate = &item.self_ty;
            let impls = handlers.iter().map(|handler| aggregate_command(krate, aggregate, handler));
            let stub_impls = stubs.iter().map(|stub| stub_command(krate, aggregate, stub));
            let commands =
                handlers.iter().map(|handler| &handler.command).chain(stubs.iter().map(|stub| &stub.command));
            quote! {
                #item
                const _: () = {
                    #(#impls)*
                    #(#stub_impls)*

                    #[automatically_derived]
                    impl #krate::command::CommandHandlerBlock for #aggregate {
                        fn commands() -> #krate::__private::Vec<#krate::__private::CommandDescriptor> {
                            #krate::__private::Vec::from([
                                #(#krate::__private::CommandDescriptor::of::<#commands>()),*
                            ])
                        }
                    }
                };
            }
        }
        Model::Fn { krate, item, handler, stub } => {
            let imp = handler
                .as_ref()
                .map(|handler| standalone_command(krate, handler))
                .or_else(|| stub.as_ref().map(|stub| standalone_stub(krate, stub)));
            if let Some(imp) = imp {
                quote! {
                    #item
                    const _: () = { #imp };
                }
            } else {
                quote!(#item)
            }
        }
        Model::Other(tokens) => tokens.clone(),
    }
}

/// Where to report a type error about `ty`: its name (`Error` in
/// `std::io::Error`), as a span cannot cover several tokens.
fn type_span(ty: &syn::Type) -> Span {
    common::last_segment(ty).map_or_else(|| ty.span(), |segment| segment.ident.span())
}

fn requires(krate: &TokenStream, requires: Requires) -> TokenStream {
    match requires {
        Requires::New => quote!(#krate::command::Existence::New),
        Requires::Existing => quote!(#krate::command::Existence::Existing),
        Requires::Any => quote!(#krate::command::Existence::Any),
    }
}

/// The `Ok` value as the aggregate's `Vec<Event>`. The annotation, spanned
/// at the user's `Ok` type, makes a wrong event type one "mismatched
/// types" error there, naming both types.
fn events(krate: &TokenStream, aggregate: &syn::Type, handler: &Handler) -> TokenStream {
    let vec = quote!(#krate::__private::Vec);
    let (ty, annotated, normalize) = match handler.output() {
        Output::One(ty) => {
            (ty, quote!(<#aggregate as #krate::Aggregate>::Event), quote!(#vec::from([__orchestrix_checked])))
        }
        Output::Many(ty) => (ty, quote!(#vec<<#aggregate as #krate::Aggregate>::Event>), quote!(__orchestrix_checked)),
        Output::Maybe(ty) => (
            ty,
            quote!(::core::option::Option<<#aggregate as #krate::Aggregate>::Event>),
            quote!(::core::iter::Iterator::collect(::core::iter::IntoIterator::into_iter(__orchestrix_checked))),
        ),
    };
    let span = type_span(&ty);
    let annotated = common::respan(annotated, span);
    let value = quote_spanned!(span=> __orchestrix_ok);
    quote! {{
        let __orchestrix_checked: #annotated = #value;
        #normalize
    }}
}

/// The `Err` value as the aggregate's error, checked the same way.
fn error(krate: &TokenStream, aggregate: &syn::Type, err: &syn::Type) -> TokenStream {
    let span = type_span(err);
    let annotated = common::respan(quote!(<#aggregate as #krate::Aggregate>::Error), span);
    let value = quote_spanned!(span=> __orchestrix_err);
    quote! {{
        let __orchestrix_checked: #annotated = #value;
        __orchestrix_checked
    }}
}

fn aggregate_command(krate: &TokenStream, aggregate: &syn::Type, handler: &Handler) -> TokenStream {
    let Handler { ident, command, command_name, service, err, .. } = handler;
    let service_ty = service.as_ref().map_or_else(|| quote!(()), |service| quote!(#service));
    let requires = requires(krate, handler.requires);
    let receiver = handler.has_receiver.then(|| quote!(__orchestrix_aggregate,));
    let extras = handler.extras.iter().map(|extra| match extra {
        Extra::Id => quote!(__orchestrix_id),
        Extra::Service(_) => quote!(__orchestrix_service),
    });
    let call = quote!(<#aggregate>::#ident(#receiver self, #(#extras),*));
    // Only `AggregateFixture` without `with_id` calls without an id.
    let id = handler.extras.iter().any(|extra| matches!(extra, Extra::Id)).then(|| {
        let message = format!(
            "the handler `{ident}` takes the aggregate's id, and this call gave none: give a fixture one with `AggregateFixture::with_id`"
        );
        quote! {
            let ::core::option::Option::Some(__orchestrix_id) = __orchestrix_id else {
                ::core::panic!("{}", #message)
            };
        }
    });
    let events = events(krate, aggregate, handler);
    let error_value = error(krate, aggregate, err);
    let normalize = quote! {
        match __orchestrix_result {
            ::core::result::Result::Ok(__orchestrix_ok) => ::core::result::Result::Ok(#events),
            ::core::result::Result::Err(__orchestrix_err) => ::core::result::Result::Err(#error_value),
        }
    };
    let body = if handler.is_async {
        quote! {
            #id
            async move {
                let __orchestrix_result = #call.await;
                #normalize
            }
        }
    } else {
        quote! {
            #id
            let __orchestrix_result = #call;
            ::core::future::ready(#normalize)
        }
    };
    command_impl(krate, aggregate, command, command_name, &service_ty, &requires, &body)
}

/// The impl of a command whose handler has errors: it never runs.
fn stub_command(krate: &TokenStream, aggregate: &syn::Type, stub: &Stub) -> TokenStream {
    let body = quote! {
        let _ = (__orchestrix_id, __orchestrix_aggregate, __orchestrix_service);
        ::core::future::pending()
    };
    let requires = requires(krate, Requires::Any);
    command_impl(krate, aggregate, &stub.command, &stub.command_name, &quote!(()), &requires, &body)
}

fn command_impl(
    krate: &TokenStream,
    aggregate: &syn::Type,
    command: &syn::Type,
    command_name: &str,
    service_ty: &TokenStream,
    requires: &TokenStream,
    body: &TokenStream,
) -> TokenStream {
    quote! {
        #[automatically_derived]
        impl #krate::AggregateCommand for #command {
            type Aggregate = #aggregate;
            type Service = #service_ty;
            const NAME: &'static str = #command_name;
            const REQUIRES: #krate::command::Existence = #requires;

            fn handle<'__orchestrix_a>(
                self,
                __orchestrix_id: ::core::option::Option<&'__orchestrix_a <Self::Aggregate as #krate::Aggregate>::Id>,
                __orchestrix_aggregate: &'__orchestrix_a Self::Aggregate,
                __orchestrix_service: &'__orchestrix_a Self::Service,
            ) -> impl ::core::future::Future<Output = #krate::__private::HandlerResult<Self::Aggregate>>
                   + ::core::marker::Send
                   + '__orchestrix_a {
                #body
            }
        }
    }
}

fn standalone_command(krate: &TokenStream, handler: &Handler) -> TokenStream {
    let Handler { ident, command, command_name, service, ok, err, .. } = handler;
    let service_ty = service.as_ref().map_or_else(|| quote!(()), |service| quote!(#service));
    let service_arg = service.as_ref().map(|_| quote!(__orchestrix_service));
    // A non-async function was reported; its stub never runs.
    let body = if handler.is_async { quote!(#ident(self, #service_arg)) } else { quote!(::core::future::pending()) };
    standalone_impl(krate, command, command_name, &quote!(#ok), &quote!(#err), &service_ty, &body)
}

/// The impl of a standalone command whose handler has errors: it never
/// runs, and keeps the handler's `Ok` and `Err` types when they are known.
fn standalone_stub(krate: &TokenStream, stub: &Stub) -> TokenStream {
    let (ok, err) = stub.result.as_ref().map_or_else(
        || (quote!(::core::convert::Infallible), quote!(::core::convert::Infallible)),
        |(ok, err)| (quote!(#ok), quote!(#err)),
    );
    let body = quote! {
        let _ = __orchestrix_service;
        ::core::future::pending()
    };
    standalone_impl(krate, &stub.command, &stub.command_name, &ok, &err, &quote!(()), &body)
}

fn standalone_impl(
    krate: &TokenStream,
    command: &syn::Type,
    command_name: &str,
    ok: &TokenStream,
    err: &TokenStream,
    service_ty: &TokenStream,
    body: &TokenStream,
) -> TokenStream {
    quote! {
        #[automatically_derived]
        impl #krate::StandaloneCommand for #command {
            type Output = #ok;
            type Error = #err;
            type Service = #service_ty;
            const NAME: &'static str = #command_name;

            fn handle(
                self,
                __orchestrix_service: &Self::Service,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<Self::Output, Self::Error>>
                   + ::core::marker::Send
                   + '_ {
                #body
            }
        }
    }
}
