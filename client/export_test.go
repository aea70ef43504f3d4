package client

// BrokerForExamples is the address of the broker TestMain starts for the examples.
func BrokerForExamples() string { return exampleAddr }
