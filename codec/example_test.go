package codec_test

import (
	"fmt"

	"github.com/midge-mqtt/midge/codec"
)

// A connection's read loop: decode every whole frame that has arrived and
// keep the rest for the next read.
func ExampleDecoder_Decode() {
	in := []byte{
		0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 3, 'z', 'e', 'n', // CONNECT 5.0
		0x30, 11, 0, 3, 'a', '/', 'b', 0, 'h', 'e', 'l', 'l', 'o', // PUBLISH
		0xc0, // the first byte of a PINGREQ; the second has not arrived
	}
	var d codec.Decoder
	var p codec.Packet
	for {
		n, err := d.Decode(in, &p)
		if err == codec.ErrIncomplete {
			break
		}
		if err != nil {
			fmt.Println("close:", err)
			return
		}
		fmt.Printf("%v version %d %q\n", p.Type, d.Version, p.Topic)
		in = in[n:]
	}
	fmt.Println(len(in), "byte kept")
	// Output:
	// CONNECT version 5 ""
	// PUBLISH version 5 "a/b"
	// 1 byte kept
}

// A PUBLISH sent to many subscribers: the header is encoded per subscriber,
// the payload is written after it without copying.
func ExampleAppendPublishHeader() {
	msg := codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 9, Topic: []byte("a/b"), Payload: []byte("hello")}
	hdr := codec.AppendPublishHeader(make([]byte, 0, 64), codec.Version311, &msg)
	fmt.Printf("% x | %s\n", hdr, msg.Payload)
	// Output: 32 0c 00 03 61 2f 62 00 09 | hello
}
