//! What the macros emit when they cannot do their job: the error, plus
//! enough of the normal output that the error is the only one.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned;
use syn::{Attribute, ItemImpl};

use crate::attr::Marker;

/// A marker used outside a hooks block: the error, then the item unchanged.
pub(crate) fn outside(marker: &str, item: TokenStream) -> TokenStream {
    let mut out = syn::Error::new(
        Span::call_site(),
        format!("`#[{marker}(...)]` only marks methods inside a `#[microagent::hooks]` impl block"),
    )
    .into_compile_error();
    out.extend(item);
    out
}

/// A hooks block with mistakes: the errors, the block (markers removed) and
/// an empty declaration table.
pub(crate) fn hooks(errors: syn::Error, item: &ItemImpl) -> TokenStream {
    let errors = errors.into_compile_error();
    let self_ty = &item.self_ty;
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    quote! {
        #errors
        #item
        #[automatically_derived]
        // A missing hooks block is reported as such, not with a list of
        // the agents that have one.
        #[diagnostic::do_not_recommend]
        impl #impl_generics ::microagent::__private::Hooks for #self_ty #where_clause {
            const HOOKS: ::microagent::__private::HookTable<Self> =
                ::microagent::__private::HookTable::EMPTY;
        }
    }
}

/// Markers on something that is not a method: one error each; they are
/// removed so that they do not expand on their own.
pub(crate) fn reject_markers(attrs: &mut Vec<Attribute>, errors: &mut Vec<syn::Error>) {
    for attr in attrs.iter().filter(|a| Marker::of(a).is_some()) {
        errors.push(syn::Error::new(
            attr.span(),
            "`#[on(...)]`, `#[periodic(...)]`, `#[cron(...)]`, `#[receiver(...)]` and `#[consumer(...)]` mark methods; this is not a method",
        ));
    }
    attrs.retain(|a| Marker::of(a).is_none());
}
