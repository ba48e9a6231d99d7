package codec

import (
	"errors"
	"strconv"
)

// ReasonCode is the one-byte outcome that MQTT 5 puts in CONNACK, PUBACK,
// PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH, and one per topic filter in
// SUBACK and UNSUBACK (§2.4). Values below 0x80 report success, the others
// failure. Each packet type allows its own subset; ValidFor tells which.
type ReasonCode byte

// The reason codes of §2.4. 0x00 has three names in the specification; all
// three are given, and so are Granted QoS 1 and 2.
const (
	ReasonSuccess                             ReasonCode = 0x00
	ReasonNormalDisconnection                 ReasonCode = 0x00
	ReasonGrantedQoS0                         ReasonCode = 0x00
	ReasonGrantedQoS1                         ReasonCode = 0x01
	ReasonGrantedQoS2                         ReasonCode = 0x02
	ReasonDisconnectWithWill                  ReasonCode = 0x04
	ReasonNoMatchingSubscribers               ReasonCode = 0x10
	ReasonNoSubscriptionExisted               ReasonCode = 0x11
	ReasonContinueAuthentication              ReasonCode = 0x18
	ReasonReAuthenticate                      ReasonCode = 0x19
	ReasonUnspecifiedError                    ReasonCode = 0x80
	ReasonMalformedPacket                     ReasonCode = 0x81
	ReasonProtocolError                       ReasonCode = 0x82
	ReasonImplementationSpecificError         ReasonCode = 0x83
	ReasonUnsupportedProtocolVersion          ReasonCode = 0x84
	ReasonClientIdentifierNotValid            ReasonCode = 0x85
	ReasonBadUserNameOrPassword               ReasonCode = 0x86
	ReasonNotAuthorized                       ReasonCode = 0x87
	ReasonServerUnavailable                   ReasonCode = 0x88
	ReasonServerBusy                          ReasonCode = 0x89
	ReasonBanned                              ReasonCode = 0x8A
	ReasonServerShuttingDown                  ReasonCode = 0x8B
	ReasonBadAuthenticationMethod             ReasonCode = 0x8C
	ReasonKeepAliveTimeout                    ReasonCode = 0x8D
	ReasonSessionTakenOver                    ReasonCode = 0x8E
	ReasonTopicFilterInvalid                  ReasonCode = 0x8F
	ReasonTopicNameInvalid                    ReasonCode = 0x90
	ReasonPacketIdentifierInUse               ReasonCode = 0x91
	ReasonPacketIdentifierNotFound            ReasonCode = 0x92
	ReasonReceiveMaximumExceeded              ReasonCode = 0x93
	ReasonTopicAliasInvalid                   ReasonCode = 0x94
	ReasonPacketTooLarge                      ReasonCode = 0x95
	ReasonMessageRateTooHigh                  ReasonCode = 0x96
	ReasonQuotaExceeded                       ReasonCode = 0x97
	ReasonAdministrativeAction                ReasonCode = 0x98
	ReasonPayloadFormatInvalid                ReasonCode = 0x99
	ReasonRetainNotSupported                  ReasonCode = 0x9A
	ReasonQoSNotSupported                     ReasonCode = 0x9B
	ReasonUseAnotherServer                    ReasonCode = 0x9C
	ReasonServerMoved                         ReasonCode = 0x9D
	ReasonSharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ReasonConnectionRateExceeded              ReasonCode = 0x9F
	ReasonMaximumConnectTime                  ReasonCode = 0xA0
	ReasonSubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	ReasonWildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

var reasonNames = [256]string{
	ReasonSuccess:                             "Success",
	ReasonGrantedQoS1:                         "Granted QoS 1",
	ReasonGrantedQoS2:                         "Granted QoS 2",
	ReasonDisconnectWithWill:                  "Disconnect with Will Message",
	ReasonNoMatchingSubscribers:               "No matching subscribers",
	ReasonNoSubscriptionExisted:               "No subscription existed",
	ReasonContinueAuthentication:              "Continue authentication",
	ReasonReAuthenticate:                      "Re-authenticate",
	ReasonUnspecifiedError:                    "Unspecified error",
	ReasonMalformedPacket:                     "Malformed Packet",
	ReasonProtocolError:                       "Protocol Error",
	ReasonImplementationSpecificError:         "Implementation specific error",
	ReasonUnsupportedProtocolVersion:          "Unsupported Protocol Version",
	ReasonClientIdentifierNotValid:            "Client Identifier not valid",
	ReasonBadUserNameOrPassword:               "Bad User Name or Password",
	ReasonNotAuthorized:                       "Not authorized",
	ReasonServerUnavailable:                   "Server unavailable",
	ReasonServerBusy:                          "Server busy",
	ReasonBanned:                              "Banned",
	ReasonServerShuttingDown:                  "Server shutting down",
	ReasonBadAuthenticationMethod:             "Bad authentication method",
	ReasonKeepAliveTimeout:                    "Keep Alive timeout",
	ReasonSessionTakenOver:                    "Session taken over",
	ReasonTopicFilterInvalid:                  "Topic Filter invalid",
	ReasonTopicNameInvalid:                    "Topic Name invalid",
	ReasonPacketIdentifierInUse:               "Packet Identifier in use",
	ReasonPacketIdentifierNotFound:            "Packet Identifier not found",
	ReasonReceiveMaximumExceeded:              "Receive Maximum exceeded",
	ReasonTopicAliasInvalid:                   "Topic Alias invalid",
	ReasonPacketTooLarge:                      "Packet too large",
	ReasonMessageRateTooHigh:                  "Message rate too high",
	ReasonQuotaExceeded:                       "Quota exceeded",
	ReasonAdministrativeAction:                "Administrative action",
	ReasonPayloadFormatInvalid:                "Payload format invalid",
	ReasonRetainNotSupported:                  "Retain not supported",
	ReasonQoSNotSupported:                     "QoS not supported",
	ReasonUseAnotherServer:                    "Use another server",
	ReasonServerMoved:                         "Server moved",
	ReasonSharedSubscriptionsNotSupported:     "Shared Subscriptions not supported",
	ReasonConnectionRateExceeded:              "Connection rate exceeded",
	ReasonMaximumConnectTime:                  "Maximum connect time",
	ReasonSubscriptionIdentifiersNotSupported: "Subscription Identifiers not supported",
	ReasonWildcardSubscriptionsNotSupported:   "Wildcard Subscriptions not supported",
}

// String returns the name the specification gives the code, e.g.
// "Packet too large"; 0x00 is "Success" whatever the packet.
func (c ReasonCode) String() string {
	if s := reasonNames[c]; s != "" {
		return s
	}
	return "ReasonCode(" + strconv.Itoa(int(c)) + ")"
}

// reasonSet is a set of reason codes, one bit per value.
type reasonSet [4]uint64

func reasons(codes ...ReasonCode) reasonSet {
	var s reasonSet
	for _, c := range codes {
		s[c/64] |= 1 << (c % 64)
	}
	return s
}

func (s *reasonSet) has(c ReasonCode) bool { return s[c/64]&(1<<(c%64)) != 0 }

// reasonsFor lists the codes each packet type may carry: tables 3-1 (CONNACK),
// 3-4 (PUBACK), 3-5 (PUBREC), 3-6 (PUBREL), 3-7 (PUBCOMP), 3-9 (SUBACK),
// 3-10 (UNSUBACK), 3-11 (DISCONNECT) and 3-12 (AUTH).
var reasonsFor = [...]reasonSet{
	TypeConnack: reasons(ReasonSuccess, ReasonUnspecifiedError, ReasonMalformedPacket, ReasonProtocolError,
		ReasonImplementationSpecificError, ReasonUnsupportedProtocolVersion, ReasonClientIdentifierNotValid,
		ReasonBadUserNameOrPassword, ReasonNotAuthorized, ReasonServerUnavailable, ReasonServerBusy, ReasonBanned,
		ReasonBadAuthenticationMethod, ReasonTopicNameInvalid, ReasonPacketTooLarge, ReasonQuotaExceeded,
		ReasonPayloadFormatInvalid, ReasonRetainNotSupported, ReasonQoSNotSupported, ReasonUseAnotherServer,
		ReasonServerMoved, ReasonConnectionRateExceeded),
	TypePuback:  publishAckReasons,
	TypePubrec:  publishAckReasons,
	TypePubrel:  reasons(ReasonSuccess, ReasonPacketIdentifierNotFound),
	TypePubcomp: reasons(ReasonSuccess, ReasonPacketIdentifierNotFound),
	TypeSuback: reasons(ReasonGrantedQoS0, ReasonGrantedQoS1, ReasonGrantedQoS2, ReasonUnspecifiedError,
		ReasonImplementationSpecificError, ReasonNotAuthorized, ReasonTopicFilterInvalid,
		ReasonPacketIdentifierInUse, ReasonQuotaExceeded, ReasonSharedSubscriptionsNotSupported,
		ReasonSubscriptionIdentifiersNotSupported, ReasonWildcardSubscriptionsNotSupported),
	TypeUnsuback: reasons(ReasonSuccess, ReasonNoSubscriptionExisted, ReasonUnspecifiedError,
		ReasonImplementationSpecificError, ReasonNotAuthorized, ReasonTopicFilterInvalid,
		ReasonPacketIdentifierInUse),
	TypeDisconnect: reasons(ReasonNormalDisconnection, ReasonDisconnectWithWill, ReasonUnspecifiedError,
		ReasonMalformedPacket, ReasonProtocolError, ReasonImplementationSpecificError, ReasonNotAuthorized,
		ReasonServerBusy, ReasonServerShuttingDown, ReasonKeepAliveTimeout, ReasonSessionTakenOver,
		ReasonTopicFilterInvalid, ReasonTopicNameInvalid, ReasonReceiveMaximumExceeded, ReasonTopicAliasInvalid,
		ReasonPacketTooLarge, ReasonMessageRateTooHigh, ReasonQuotaExceeded, ReasonAdministrativeAction,
		ReasonPayloadFormatInvalid, ReasonRetainNotSupported, ReasonQoSNotSupported, ReasonUseAnotherServer,
		ReasonServerMoved, ReasonSharedSubscriptionsNotSupported, ReasonConnectionRateExceeded,
		ReasonMaximumConnectTime, ReasonSubscriptionIdentifiersNotSupported,
		ReasonWildcardSubscriptionsNotSupported),
	TypeAuth: reasons(ReasonSuccess, ReasonContinueAuthentication, ReasonReAuthenticate),
}

var publishAckReasons = reasons(ReasonSuccess, ReasonNoMatchingSubscribers, ReasonUnspecifiedError,
	ReasonImplementationSpecificError, ReasonNotAuthorized, ReasonTopicNameInvalid,
	ReasonPacketIdentifierInUse, ReasonQuotaExceeded, ReasonPayloadFormatInvalid)

// ValidFor reports whether a packet of type t may carry c at level 5.
func (c ReasonCode) ValidFor(t Type) bool {
	return int(t) < len(reasonsFor) && reasonsFor[t].has(c)
}

// ReasonOf maps an error from ReadPacket to the reason code that the
// specification asks a level-5 peer to send before closing, in DISCONNECT or,
// for a failed CONNECT, in CONNACK (§4.13): ReasonMalformedPacket,
// ReasonProtocolError, ReasonTopicAliasInvalid, ReasonPacketTooLarge or
// ReasonUnsupportedProtocolVersion. ok is false for errors that are not the
// codec's (io.EOF, a timeout): nothing can be sent then.
func ReasonOf(err error) (code ReasonCode, ok bool) {
	switch {
	case errors.Is(err, ErrTopicAliasInvalid):
		return ReasonTopicAliasInvalid, true
	case errors.Is(err, ErrProtocol):
		return ReasonProtocolError, true
	case errors.Is(err, ErrMalformed):
		return ReasonMalformedPacket, true
	case errors.Is(err, ErrPacketTooLarge):
		return ReasonPacketTooLarge, true
	case errors.Is(err, ErrUnsupportedProtocol):
		return ReasonUnsupportedProtocolVersion, true
	}
	return 0, false
}
