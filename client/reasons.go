package client

import "github.com/midge-mqtt/midge/codec"

// reasonTexts are the MQTT 5 reason code names of the specification (2.4).
var reasonTexts = map[byte]string{
	codec.Success:                     "Success",
	codec.GrantedQoS1:                 "Granted QoS 1",
	codec.GrantedQoS2:                 "Granted QoS 2",
	codec.DisconnectWithWill:          "Disconnect with Will Message",
	codec.NoMatchingSubscribers:       "No matching subscribers",
	codec.NoSubscriptionExisted:       "No subscription existed",
	codec.ContinueAuthentication:      "Continue authentication",
	codec.ReAuthenticate:              "Re-authenticate",
	codec.UnspecifiedError:            "Unspecified error",
	codec.MalformedPacket:             "Malformed Packet",
	codec.ProtocolError:               "Protocol Error",
	codec.ImplementationSpecificError: "Implementation specific error",
	codec.UnsupportedProtocolVersion:  "Unsupported Protocol Version",
	codec.ClientIdentifierNotValid:    "Client Identifier not valid",
	codec.BadUsernameOrPassword:       "Bad User Name or Password",
	codec.NotAuthorized:               "Not authorized",
	codec.ServerUnavailable:           "Server unavailable",
	codec.ServerBusy:                  "Server busy",
	codec.Banned:                      "Banned",
	codec.ServerShuttingDown:          "Server shutting down",
	codec.BadAuthenticationMethod:     "Bad authentication method",
	codec.KeepAliveTimeout:            "Keep Alive timeout",
	codec.SessionTakenOver:            "Session taken over",
	codec.TopicFilterInvalid:          "Topic Filter invalid",
	codec.TopicNameInvalid:            "Topic Name invalid",
	codec.PacketIdentifierInUse:       "Packet Identifier in use",
	codec.PacketIdentifierNotFound:    "Packet Identifier not found",
	codec.ReceiveMaximumExceeded:      "Receive Maximum exceeded",
	codec.TopicAliasInvalid:           "Topic Alias invalid",
	codec.PacketTooLarge:              "Packet too large",
	codec.MessageRateTooHigh:          "Message rate too high",
	codec.QuotaExceeded:               "Quota exceeded",
	codec.AdministrativeAction:        "Administrative action",
	codec.PayloadFormatInvalid:        "Payload format invalid",
	codec.RetainNotSupported:          "Retain not supported",
	codec.QoSNotSupported:             "QoS not supported",
	codec.UseAnotherServer:            "Use another server",
	codec.ServerMoved:                 "Server moved",
	codec.SharedSubsNotSupported:      "Shared Subscriptions not supported",
	codec.ConnectionRateExceeded:      "Connection rate exceeded",
	codec.MaximumConnectTime:          "Maximum connect time",
	codec.SubIDsNotSupported:          "Subscription identifiers not supported",
	codec.WildcardSubsNotSupported:    "Wildcard Subscriptions not supported",
}

// ReasonText names an MQTT 5 reason code.
func ReasonText(code byte) string {
	if s, ok := reasonTexts[code]; ok {
		return s
	}
	return "Unknown reason"
}
