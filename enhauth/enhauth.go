// Package enhauth is MQTT 5's enhanced authentication (§4.12) on the server's side: methods that
// the broker holds by name, each running one exchange of Authentication Data per connection.
// An exchange is a pure state machine: data in, data out, no I/O, locks or clocks, so the
// broker owns the packets (CONNECT, AUTH, CONNACK), the deadlines and the limits.
//
// SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash) is the one method so far.
package enhauth

import "errors"

// Method is one authentication method, named as the client names it in CONNECT's
// Authentication Method property.
type Method interface {
	Name() string
	// Start begins the exchange of one connection.
	Start() Exchange
}

// Exchange is the server's side of one authentication exchange.
type Exchange interface {
	// Step takes the client's next Authentication Data (CONNECT's, then each AUTH's) and returns
	// the server's answer. done false: send out in AUTH 0x18 (Continue authentication) and wait
	// for the client's next. done true: the client is authenticated, and out goes in CONNACK
	// (AUTH 0x00 when re-authenticating). An error ends the exchange: the client is refused;
	// the error says why, for the log only.
	Step(in []byte) (out []byte, done bool, err error)
	// Username is who the client proved to be, once Step said done.
	Username() string
}

// ErrNotAuthorized is the error of an exchange whose client failed to prove who it claimed to
// be: a wrong password, an unknown user, one whose credential the method cannot check.
var ErrNotAuthorized = errors.New("not authorized")

// ErrMalformed is the error of an exchange that received data the method cannot read, or data
// out of turn.
var ErrMalformed = errors.New("malformed authentication data")
