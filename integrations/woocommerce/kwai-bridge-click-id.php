<?php
/**
 * Plugin Name: Kwai Bridge Click ID
 * Description: Copies the Kwai click id (cookie _kwai_click_id set by the Kwai Bridge snippet, or click_id in the landing URL) into the order meta _kwai_click_id at checkout, so the order webhook carries it.
 * Version: 1.0.0
 * Requires at least: 6.0
 * Requires PHP: 7.4
 * WC requires at least: 8.0
 * License: MIT
 */

if ( ! defined( 'ABSPATH' ) ) {
	exit;
}

const KWAI_BRIDGE_META_KEY = '_kwai_click_id';
const KWAI_BRIDGE_COOKIE   = '_kwai_click_id';
const KWAI_BRIDGE_PARAM    = 'click_id';

/**
 * Keep only the characters a Kwai click id is made of (base64 and URL-safe base64:
 * letters, digits, + / = _ - .). sanitize_text_field() is not used on purpose: it strips
 * percent-encoded octets (%2B, %2F, %3D), which corrupts click ids.
 */
function kwai_bridge_sanitize_click_id( $value ) {
	if ( ! is_string( $value ) ) {
		return '';
	}
	$value = preg_replace( '#[^A-Za-z0-9+/=_.\-]#', '', $value );
	return substr( (string) $value, 0, 512 );
}

/**
 * The value of `$name` in a raw `a=b&c=d` (or `a=b; c=d`) string, decoded exactly once
 * with rawurldecode, so that a literal "+" stays "+". $_GET and $_COOKIE are not used:
 * PHP has already turned "+" into a space there.
 */
function kwai_bridge_raw_value( $raw, $separator, $name ) {
	foreach ( explode( $separator, (string) $raw ) as $pair ) {
		$parts = explode( '=', trim( $pair ), 2 );
		if ( 2 === count( $parts ) && $name === rawurldecode( $parts[0] ) ) {
			$found = kwai_bridge_sanitize_click_id( rawurldecode( $parts[1] ) );
			if ( '' !== $found ) {
				return $found;
			}
		}
	}
	return '';
}

/** The click id of this visit: the snippet's cookie first, then the current URL. */
function kwai_bridge_current_click_id() {
	$cookies = isset( $_SERVER['HTTP_COOKIE'] ) ? wp_unslash( $_SERVER['HTTP_COOKIE'] ) : '';
	$found   = kwai_bridge_raw_value( $cookies, ';', KWAI_BRIDGE_COOKIE );
	if ( '' !== $found ) {
		return $found;
	}
	$query = isset( $_SERVER['QUERY_STRING'] ) ? wp_unslash( $_SERVER['QUERY_STRING'] ) : '';
	return kwai_bridge_raw_value( $query, '&', KWAI_BRIDGE_PARAM );
}

/** Store the click id on the order once; an id already there is kept. */
function kwai_bridge_save_click_id( $order ) {
	if ( ! $order instanceof WC_Order || '' !== (string) $order->get_meta( KWAI_BRIDGE_META_KEY ) ) {
		return;
	}
	$click_id = kwai_bridge_current_click_id();
	if ( '' === $click_id ) {
		return;
	}
	$order->update_meta_data( KWAI_BRIDGE_META_KEY, $click_id );
	$order->save();
}

// Classic (shortcode) checkout.
add_action( 'woocommerce_checkout_order_created', 'kwai_bridge_save_click_id', 10, 1 );

// Block checkout (Store API).
add_action(
	'woocommerce_store_api_checkout_update_order_meta',
	function ( $order ) {
		kwai_bridge_save_click_id( $order );
	},
	10,
	1
);
