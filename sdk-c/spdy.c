/* spdy.c -- SPDY/3.1 session, server or client: frame parser, frame
 * writer, header compression. See spdy.h for what of the protocol is used
 * and why. */
#include "spdy.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "buf.h"
#include "log.h"

const unsigned char spdy_dictionary[] = {
    0x00, 0x00, 0x00, 0x07, 0x6f, 0x70, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00,
    0x00, 0x00, 0x04, 0x68, 0x65, 0x61, 0x64, 0x00, 0x00, 0x00, 0x04, 0x70,
    0x6f, 0x73, 0x74, 0x00, 0x00, 0x00, 0x03, 0x70, 0x75, 0x74, 0x00, 0x00,
    0x00, 0x06, 0x64, 0x65, 0x6c, 0x65, 0x74, 0x65, 0x00, 0x00, 0x00, 0x05,
    0x74, 0x72, 0x61, 0x63, 0x65, 0x00, 0x00, 0x00, 0x06, 0x61, 0x63, 0x63,
    0x65, 0x70, 0x74, 0x00, 0x00, 0x00, 0x0e, 0x61, 0x63, 0x63, 0x65, 0x70,
    0x74, 0x2d, 0x63, 0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x00, 0x00, 0x00,
    0x0f, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x65, 0x6e, 0x63, 0x6f,
    0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x0f, 0x61, 0x63, 0x63, 0x65,
    0x70, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67, 0x75, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x00, 0x0d, 0x61, 0x63, 0x63, 0x65, 0x70, 0x74, 0x2d, 0x72, 0x61,
    0x6e, 0x67, 0x65, 0x73, 0x00, 0x00, 0x00, 0x03, 0x61, 0x67, 0x65, 0x00,
    0x00, 0x00, 0x05, 0x61, 0x6c, 0x6c, 0x6f, 0x77, 0x00, 0x00, 0x00, 0x0d,
    0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61, 0x74, 0x69, 0x6f,
    0x6e, 0x00, 0x00, 0x00, 0x0d, 0x63, 0x61, 0x63, 0x68, 0x65, 0x2d, 0x63,
    0x6f, 0x6e, 0x74, 0x72, 0x6f, 0x6c, 0x00, 0x00, 0x00, 0x0a, 0x63, 0x6f,
    0x6e, 0x6e, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c,
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x62, 0x61, 0x73, 0x65,
    0x00, 0x00, 0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d,
    0x65, 0x6e, 0x63, 0x6f, 0x64, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10,
    0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x61, 0x6e, 0x67,
    0x75, 0x61, 0x67, 0x65, 0x00, 0x00, 0x00, 0x0e, 0x63, 0x6f, 0x6e, 0x74,
    0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x65, 0x6e, 0x67, 0x74, 0x68, 0x00, 0x00,
    0x00, 0x10, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6c, 0x6f,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0b, 0x63, 0x6f,
    0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x6d, 0x64, 0x35, 0x00, 0x00, 0x00,
    0x0d, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e, 0x74, 0x2d, 0x72, 0x61, 0x6e,
    0x67, 0x65, 0x00, 0x00, 0x00, 0x0c, 0x63, 0x6f, 0x6e, 0x74, 0x65, 0x6e,
    0x74, 0x2d, 0x74, 0x79, 0x70, 0x65, 0x00, 0x00, 0x00, 0x04, 0x64, 0x61,
    0x74, 0x65, 0x00, 0x00, 0x00, 0x04, 0x65, 0x74, 0x61, 0x67, 0x00, 0x00,
    0x00, 0x06, 0x65, 0x78, 0x70, 0x65, 0x63, 0x74, 0x00, 0x00, 0x00, 0x07,
    0x65, 0x78, 0x70, 0x69, 0x72, 0x65, 0x73, 0x00, 0x00, 0x00, 0x04, 0x66,
    0x72, 0x6f, 0x6d, 0x00, 0x00, 0x00, 0x04, 0x68, 0x6f, 0x73, 0x74, 0x00,
    0x00, 0x00, 0x08, 0x69, 0x66, 0x2d, 0x6d, 0x61, 0x74, 0x63, 0x68, 0x00,
    0x00, 0x00, 0x11, 0x69, 0x66, 0x2d, 0x6d, 0x6f, 0x64, 0x69, 0x66, 0x69,
    0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65, 0x00, 0x00, 0x00, 0x0d,
    0x69, 0x66, 0x2d, 0x6e, 0x6f, 0x6e, 0x65, 0x2d, 0x6d, 0x61, 0x74, 0x63,
    0x68, 0x00, 0x00, 0x00, 0x08, 0x69, 0x66, 0x2d, 0x72, 0x61, 0x6e, 0x67,
    0x65, 0x00, 0x00, 0x00, 0x13, 0x69, 0x66, 0x2d, 0x75, 0x6e, 0x6d, 0x6f,
    0x64, 0x69, 0x66, 0x69, 0x65, 0x64, 0x2d, 0x73, 0x69, 0x6e, 0x63, 0x65,
    0x00, 0x00, 0x00, 0x0d, 0x6c, 0x61, 0x73, 0x74, 0x2d, 0x6d, 0x6f, 0x64,
    0x69, 0x66, 0x69, 0x65, 0x64, 0x00, 0x00, 0x00, 0x08, 0x6c, 0x6f, 0x63,
    0x61, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x0c, 0x6d, 0x61, 0x78,
    0x2d, 0x66, 0x6f, 0x72, 0x77, 0x61, 0x72, 0x64, 0x73, 0x00, 0x00, 0x00,
    0x06, 0x70, 0x72, 0x61, 0x67, 0x6d, 0x61, 0x00, 0x00, 0x00, 0x12, 0x70,
    0x72, 0x6f, 0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74,
    0x69, 0x63, 0x61, 0x74, 0x65, 0x00, 0x00, 0x00, 0x13, 0x70, 0x72, 0x6f,
    0x78, 0x79, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x7a, 0x61,
    0x74, 0x69, 0x6f, 0x6e, 0x00, 0x00, 0x00, 0x05, 0x72, 0x61, 0x6e, 0x67,
    0x65, 0x00, 0x00, 0x00, 0x07, 0x72, 0x65, 0x66, 0x65, 0x72, 0x65, 0x72,
    0x00, 0x00, 0x00, 0x0b, 0x72, 0x65, 0x74, 0x72, 0x79, 0x2d, 0x61, 0x66,
    0x74, 0x65, 0x72, 0x00, 0x00, 0x00, 0x06, 0x73, 0x65, 0x72, 0x76, 0x65,
    0x72, 0x00, 0x00, 0x00, 0x02, 0x74, 0x65, 0x00, 0x00, 0x00, 0x07, 0x74,
    0x72, 0x61, 0x69, 0x6c, 0x65, 0x72, 0x00, 0x00, 0x00, 0x11, 0x74, 0x72,
    0x61, 0x6e, 0x73, 0x66, 0x65, 0x72, 0x2d, 0x65, 0x6e, 0x63, 0x6f, 0x64,
    0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x07, 0x75, 0x70, 0x67, 0x72, 0x61,
    0x64, 0x65, 0x00, 0x00, 0x00, 0x0a, 0x75, 0x73, 0x65, 0x72, 0x2d, 0x61,
    0x67, 0x65, 0x6e, 0x74, 0x00, 0x00, 0x00, 0x04, 0x76, 0x61, 0x72, 0x79,
    0x00, 0x00, 0x00, 0x03, 0x76, 0x69, 0x61, 0x00, 0x00, 0x00, 0x07, 0x77,
    0x61, 0x72, 0x6e, 0x69, 0x6e, 0x67, 0x00, 0x00, 0x00, 0x10, 0x77, 0x77,
    0x77, 0x2d, 0x61, 0x75, 0x74, 0x68, 0x65, 0x6e, 0x74, 0x69, 0x63, 0x61,
    0x74, 0x65, 0x00, 0x00, 0x00, 0x06, 0x6d, 0x65, 0x74, 0x68, 0x6f, 0x64,
    0x00, 0x00, 0x00, 0x03, 0x67, 0x65, 0x74, 0x00, 0x00, 0x00, 0x06, 0x73,
    0x74, 0x61, 0x74, 0x75, 0x73, 0x00, 0x00, 0x00, 0x06, 0x32, 0x30, 0x30,
    0x20, 0x4f, 0x4b, 0x00, 0x00, 0x00, 0x07, 0x76, 0x65, 0x72, 0x73, 0x69,
    0x6f, 0x6e, 0x00, 0x00, 0x00, 0x08, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31,
    0x2e, 0x31, 0x00, 0x00, 0x00, 0x03, 0x75, 0x72, 0x6c, 0x00, 0x00, 0x00,
    0x06, 0x70, 0x75, 0x62, 0x6c, 0x69, 0x63, 0x00, 0x00, 0x00, 0x0a, 0x73,
    0x65, 0x74, 0x2d, 0x63, 0x6f, 0x6f, 0x6b, 0x69, 0x65, 0x00, 0x00, 0x00,
    0x0a, 0x6b, 0x65, 0x65, 0x70, 0x2d, 0x61, 0x6c, 0x69, 0x76, 0x65, 0x00,
    0x00, 0x00, 0x06, 0x6f, 0x72, 0x69, 0x67, 0x69, 0x6e, 0x31, 0x30, 0x30,
    0x31, 0x30, 0x31, 0x32, 0x30, 0x31, 0x32, 0x30, 0x32, 0x32, 0x30, 0x35,
    0x32, 0x30, 0x36, 0x33, 0x30, 0x30, 0x33, 0x30, 0x32, 0x33, 0x30, 0x33,
    0x33, 0x30, 0x34, 0x33, 0x30, 0x35, 0x33, 0x30, 0x36, 0x33, 0x30, 0x37,
    0x34, 0x30, 0x32, 0x34, 0x30, 0x35, 0x34, 0x30, 0x36, 0x34, 0x30, 0x37,
    0x34, 0x30, 0x38, 0x34, 0x30, 0x39, 0x34, 0x31, 0x30, 0x34, 0x31, 0x31,
    0x34, 0x31, 0x32, 0x34, 0x31, 0x33, 0x34, 0x31, 0x34, 0x34, 0x31, 0x35,
    0x34, 0x31, 0x36, 0x34, 0x31, 0x37, 0x35, 0x30, 0x32, 0x35, 0x30, 0x34,
    0x35, 0x30, 0x35, 0x32, 0x30, 0x33, 0x20, 0x4e, 0x6f, 0x6e, 0x2d, 0x41,
    0x75, 0x74, 0x68, 0x6f, 0x72, 0x69, 0x74, 0x61, 0x74, 0x69, 0x76, 0x65,
    0x20, 0x49, 0x6e, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x69, 0x6f, 0x6e,
    0x32, 0x30, 0x34, 0x20, 0x4e, 0x6f, 0x20, 0x43, 0x6f, 0x6e, 0x74, 0x65,
    0x6e, 0x74, 0x33, 0x30, 0x31, 0x20, 0x4d, 0x6f, 0x76, 0x65, 0x64, 0x20,
    0x50, 0x65, 0x72, 0x6d, 0x61, 0x6e, 0x65, 0x6e, 0x74, 0x6c, 0x79, 0x34,
    0x30, 0x30, 0x20, 0x42, 0x61, 0x64, 0x20, 0x52, 0x65, 0x71, 0x75, 0x65,
    0x73, 0x74, 0x34, 0x30, 0x31, 0x20, 0x55, 0x6e, 0x61, 0x75, 0x74, 0x68,
    0x6f, 0x72, 0x69, 0x7a, 0x65, 0x64, 0x34, 0x30, 0x33, 0x20, 0x46, 0x6f,
    0x72, 0x62, 0x69, 0x64, 0x64, 0x65, 0x6e, 0x34, 0x30, 0x34, 0x20, 0x4e,
    0x6f, 0x74, 0x20, 0x46, 0x6f, 0x75, 0x6e, 0x64, 0x35, 0x30, 0x30, 0x20,
    0x49, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x61, 0x6c, 0x20, 0x53, 0x65, 0x72,
    0x76, 0x65, 0x72, 0x20, 0x45, 0x72, 0x72, 0x6f, 0x72, 0x35, 0x30, 0x31,
    0x20, 0x4e, 0x6f, 0x74, 0x20, 0x49, 0x6d, 0x70, 0x6c, 0x65, 0x6d, 0x65,
    0x6e, 0x74, 0x65, 0x64, 0x35, 0x30, 0x33, 0x20, 0x53, 0x65, 0x72, 0x76,
    0x69, 0x63, 0x65, 0x20, 0x55, 0x6e, 0x61, 0x76, 0x61, 0x69, 0x6c, 0x61,
    0x62, 0x6c, 0x65, 0x4a, 0x61, 0x6e, 0x20, 0x46, 0x65, 0x62, 0x20, 0x4d,
    0x61, 0x72, 0x20, 0x41, 0x70, 0x72, 0x20, 0x4d, 0x61, 0x79, 0x20, 0x4a,
    0x75, 0x6e, 0x20, 0x4a, 0x75, 0x6c, 0x20, 0x41, 0x75, 0x67, 0x20, 0x53,
    0x65, 0x70, 0x74, 0x20, 0x4f, 0x63, 0x74, 0x20, 0x4e, 0x6f, 0x76, 0x20,
    0x44, 0x65, 0x63, 0x20, 0x30, 0x30, 0x3a, 0x30, 0x30, 0x3a, 0x30, 0x30,
    0x20, 0x4d, 0x6f, 0x6e, 0x2c, 0x20, 0x54, 0x75, 0x65, 0x2c, 0x20, 0x57,
    0x65, 0x64, 0x2c, 0x20, 0x54, 0x68, 0x75, 0x2c, 0x20, 0x46, 0x72, 0x69,
    0x2c, 0x20, 0x53, 0x61, 0x74, 0x2c, 0x20, 0x53, 0x75, 0x6e, 0x2c, 0x20,
    0x47, 0x4d, 0x54, 0x63, 0x68, 0x75, 0x6e, 0x6b, 0x65, 0x64, 0x2c, 0x74,
    0x65, 0x78, 0x74, 0x2f, 0x68, 0x74, 0x6d, 0x6c, 0x2c, 0x69, 0x6d, 0x61,
    0x67, 0x65, 0x2f, 0x70, 0x6e, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65,
    0x2f, 0x6a, 0x70, 0x67, 0x2c, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x2f, 0x67,
    0x69, 0x66, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69, 0x63, 0x61, 0x74, 0x69,
    0x6f, 0x6e, 0x2f, 0x78, 0x6d, 0x6c, 0x2c, 0x61, 0x70, 0x70, 0x6c, 0x69,
    0x63, 0x61, 0x74, 0x69, 0x6f, 0x6e, 0x2f, 0x78, 0x68, 0x74, 0x6d, 0x6c,
    0x2b, 0x78, 0x6d, 0x6c, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x70, 0x6c,
    0x61, 0x69, 0x6e, 0x2c, 0x74, 0x65, 0x78, 0x74, 0x2f, 0x6a, 0x61, 0x76,
    0x61, 0x73, 0x63, 0x72, 0x69, 0x70, 0x74, 0x2c, 0x70, 0x75, 0x62, 0x6c,
    0x69, 0x63, 0x70, 0x72, 0x69, 0x76, 0x61, 0x74, 0x65, 0x6d, 0x61, 0x78,
    0x2d, 0x61, 0x67, 0x65, 0x3d, 0x67, 0x7a, 0x69, 0x70, 0x2c, 0x64, 0x65,
    0x66, 0x6c, 0x61, 0x74, 0x65, 0x2c, 0x73, 0x64, 0x63, 0x68, 0x63, 0x68,
    0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x75, 0x74, 0x66, 0x2d, 0x38, 0x63,
    0x68, 0x61, 0x72, 0x73, 0x65, 0x74, 0x3d, 0x69, 0x73, 0x6f, 0x2d, 0x38,
    0x38, 0x35, 0x39, 0x2d, 0x31, 0x2c, 0x75, 0x74, 0x66, 0x2d, 0x2c, 0x2a,
    0x2c, 0x65, 0x6e, 0x71, 0x3d, 0x30, 0x2e,
};
const size_t spdy_dictionary_len = sizeof spdy_dictionary;

#define FRAME_HEADER 8
#define MAX_WIRE_LENGTH 0xffffffu /* 24-bit length field */
/* DATA written in frames of at most this size, so one large write does not
 * hold a 16 MiB frame in front of every other stream. */
#define DATA_CHUNK (64u * 1024)
/* The output queue's consumed prefix is reclaimed beyond this size. */
#define COMPACT_AT (64u * 1024)

enum parse_state { ST_HEAD, ST_DATA, ST_CONTROL, ST_SKIP };

struct stream {
    uint32_t id;
    bool remote_fin; /* the client finished sending */
    bool local_fin;  /* we finished sending */
    bool opening;    /* inside on_stream, before SYN_REPLY */
    bool replied;    /* client: the server answered our SYN_STREAM */
};

struct spdy_session {
    spdy_callbacks cb;
    void *user;
    spdy_limits lim;

    /* input */
    enum parse_state st;
    uint8_t head[FRAME_HEADER];
    size_t head_len;
    uint32_t frame_stream; /* DATA: stream id */
    uint8_t frame_flags;
    uint16_t frame_type;   /* control: type */
    size_t remaining;      /* payload bytes still to come (DATA, SKIP) */
    uint8_t *ctrl;         /* control payload being collected */
    size_t ctrl_len, ctrl_need;
    uint32_t last_stream;  /* highest stream id the peer opened */
    bool client;           /* we open the streams; the peer answers */
    uint32_t next_id;      /* client: the id spdy_open gives next */
    bool paused;
    bool goaway_received;

    /* header compression: one context per direction for the session */
    z_stream inflater, deflater;
    bool inflater_ready, deflater_ready;

    struct stream *streams;
    size_t nstreams, cap_streams;

    /* output queue: out.data[out_off .. out.len) waits to be written */
    vk_buf out;
    size_t out_off;
    bool out_full; /* reached the high-water mark since last drained */

    bool closing;
    char error[160];
};

/* ---- helpers ---------------------------------------------------------- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t get24(const uint8_t *p)
{
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

void spdy_limits_default(spdy_limits *lim)
{
    lim->max_control = 64u * 1024;
    lim->max_header_block = 64u * 1024;
    lim->max_data = MAX_WIRE_LENGTH;
    lim->max_streams = 256;
    lim->out_high_water = 256u * 1024;
}

const char *spdy_header_get(const spdy_headers *h, const char *name)
{
    for (size_t i = 0; i < h->count; i++)
        if (strcmp(h->nv[i].name, name) == 0)
            return h->nv[i].value;
    return NULL;
}

static size_t pending(const spdy_session *s)
{
    return s->out.len - s->out_off;
}

static void fail(spdy_session *s, enum spdy_goaway_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- output ------------------------------------------------------------ */

static int out_append(spdy_session *s, const void *data, size_t len)
{
    if (vk_buf_append(&s->out, data, len) < 0)
        return -1;
    if (pending(s) >= s->lim.out_high_water)
        s->out_full = true;
    return 0;
}

static int put_control_header(spdy_session *s, uint16_t type, uint8_t flags, uint32_t len)
{
    uint8_t h[FRAME_HEADER] = {0x80, SPDY_VERSION, (uint8_t)(type >> 8), (uint8_t)type};
    put32(h + 4, len);
    h[4] = flags;
    return out_append(s, h, sizeof h);
}

static int put_control_u32x2(spdy_session *s, uint16_t type, uint32_t a, uint32_t b)
{
    uint8_t p[8];
    put32(p, a);
    put32(p + 4, b);
    if (put_control_header(s, type, 0, sizeof p) < 0)
        return -1;
    return out_append(s, p, sizeof p);
}

static int deflater_init(spdy_session *s)
{
    if (s->deflater_ready)
        return 0;
    /* A 2 KiB window holds the whole dictionary and is plenty for header
     * blocks of a few names; it keeps the context small per connection. */
    if (deflateInit2(&s->deflater, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 11, 4,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    if (deflateSetDictionary(&s->deflater, spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK) {
        deflateEnd(&s->deflater);
        return -1;
    }
    s->deflater_ready = true;
    return 0;
}

/* Append the compressed name/value block of nv to the output queue. */
static int put_header_block(spdy_session *s, const spdy_nv *nv, size_t count)
{
    vk_buf plain = VK_BUF_INIT;
    uint8_t n[4];
    int rc = -1;

    put32(n, (uint32_t)count);
    if (vk_buf_append(&plain, n, 4) < 0)
        goto out;
    for (size_t i = 0; i < count; i++) {
        size_t nlen = strlen(nv[i].name);
        size_t vlen = nv[i].value_len ? nv[i].value_len : strlen(nv[i].value);
        put32(n, (uint32_t)nlen);
        if (vk_buf_append(&plain, n, 4) < 0)
            goto out;
        for (size_t j = 0; j < nlen; j++) {
            char c = (char)tolower((unsigned char)nv[i].name[j]);
            if (vk_buf_append(&plain, &c, 1) < 0)
                goto out;
        }
        put32(n, (uint32_t)vlen);
        if (vk_buf_append(&plain, n, 4) < 0 || vk_buf_append(&plain, nv[i].value, vlen) < 0)
            goto out;
    }
    if (deflater_init(s) < 0)
        goto out;

    z_stream *z = &s->deflater;
    z->next_in = (Bytef *)plain.data;
    z->avail_in = (uInt)plain.len;
    do {
        uint8_t chunk[1024];
        z->next_out = chunk;
        z->avail_out = sizeof chunk;
        if (deflate(z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            goto out;
        if (out_append(s, chunk, sizeof chunk - z->avail_out) < 0)
            goto out;
    } while (z->avail_out == 0);
    rc = 0;
out:
    vk_buf_free(&plain);
    return rc;
}

/* A control frame whose payload is `fixed` followed by a header block. */
static int put_headers_frame(spdy_session *s, uint16_t type, uint8_t flags, const uint8_t *fixed,
                             size_t fixed_len, const spdy_nv *nv, size_t count)
{
    size_t start = s->out.len;
    if (put_control_header(s, type, flags, 0) < 0 || out_append(s, fixed, fixed_len) < 0 ||
        put_header_block(s, nv, count) < 0) {
        /* What reached the deflater is part of the compression context
         * the peer will never see: the session cannot go on. */
        s->out.len = start;
        fail(s, SPDY_GOAWAY_INTERNAL_ERROR, "out of memory");
        return -1;
    }
    uint32_t len = (uint32_t)(s->out.len - start - FRAME_HEADER);
    uint8_t *h = (uint8_t *)s->out.data + start;
    h[5] = (uint8_t)(len >> 16);
    h[6] = (uint8_t)(len >> 8);
    h[7] = (uint8_t)len;
    return 0;
}

static int put_syn_reply(spdy_session *s, uint32_t id)
{
    uint8_t fixed[4];
    put32(fixed, id);
    return put_headers_frame(s, SPDY_SYN_REPLY, 0, fixed, sizeof fixed, NULL, 0);
}

int spdy_write_syn_stream(spdy_session *s, uint32_t id, uint8_t flags, const spdy_nv *nv,
                          size_t count)
{
    uint8_t fixed[10] = {0};
    put32(fixed, id);
    return put_headers_frame(s, SPDY_SYN_STREAM, flags, fixed, sizeof fixed, nv, count);
}

int spdy_write_ping(spdy_session *s, uint32_t id)
{
    uint8_t p[4];
    put32(p, id);
    if (put_control_header(s, SPDY_PING, 0, 4) < 0)
        return -1;
    return out_append(s, p, 4);
}

static int put_data(spdy_session *s, uint32_t id, uint8_t flags, const void *data, size_t len)
{
    uint8_t h[FRAME_HEADER];
    put32(h, id & 0x7fffffffu);
    put32(h + 4, (uint32_t)len);
    h[4] = flags;
    if (out_append(s, h, sizeof h) < 0)
        return -1;
    return out_append(s, data, len);
}

/* ---- streams ----------------------------------------------------------- */

static struct stream *find_stream(spdy_session *s, uint32_t id)
{
    for (size_t i = 0; i < s->nstreams; i++)
        if (s->streams[i].id == id)
            return &s->streams[i];
    return NULL;
}

static struct stream *add_stream(spdy_session *s, uint32_t id)
{
    if (s->nstreams == s->cap_streams) {
        size_t cap = s->cap_streams ? s->cap_streams * 2 : 8;
        struct stream *p = realloc(s->streams, cap * sizeof *p);
        if (!p)
            return NULL;
        s->streams = p;
        s->cap_streams = cap;
    }
    struct stream *st = &s->streams[s->nstreams++];
    *st = (struct stream){.id = id};
    return st;
}

static void remove_stream(spdy_session *s, uint32_t id)
{
    struct stream *st = find_stream(s, id);
    if (st)
        *st = s->streams[--s->nstreams];
}

static void remove_if_done(spdy_session *s, struct stream *st)
{
    if (st->remote_fin && st->local_fin)
        remove_stream(s, st->id);
}

/* The peer finished sending on stream id: tell the user, then forget the
 * stream if we finished too. */
static void remote_finished(spdy_session *s, uint32_t id)
{
    struct stream *st = find_stream(s, id);
    if (!st || st->remote_fin)
        return;
    st->remote_fin = true;
    if (s->cb.on_fin)
        s->cb.on_fin(s->user, id);
    st = find_stream(s, id); /* the callback may have reset it */
    if (st)
        remove_if_done(s, st);
}

/* Stream ids are split by parity: a client's are odd, a server's even. */
static bool ours(const spdy_session *s, uint32_t id)
{
    return (id & 1) == (s->client ? 1u : 0u);
}

/* Whether stream id existed at some time: frames for it are late, not
 * wrong. */
static bool ever_opened(const spdy_session *s, uint32_t id)
{
    return ours(s, id) ? id < s->next_id : id <= s->last_stream;
}

static void rst(spdy_session *s, uint32_t id, uint32_t status)
{
    if (put_control_u32x2(s, SPDY_RST_STREAM, id, status) < 0)
        fail(s, SPDY_GOAWAY_INTERNAL_ERROR, "out of memory");
}

/* Reset a stream the user knows, and tell the user. */
static void reset_stream(spdy_session *s, uint32_t id, uint32_t status)
{
    rst(s, id, status);
    remove_stream(s, id);
    if (s->cb.on_reset)
        s->cb.on_reset(s->user, id, status);
}

/* ---- session errors ---------------------------------------------------- */

static void fail(spdy_session *s, enum spdy_goaway_status status, const char *fmt, ...)
{
    if (s->closing)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->error, sizeof s->error, fmt, ap);
    va_end(ap);
    vk_debug("spdy session error", "error=\"%s\"", s->error);
    spdy_goaway(s, status);
}

void spdy_goaway(spdy_session *s, enum spdy_goaway_status status)
{
    if (s->closing)
        return;
    s->closing = true;
    /* Best effort: without memory the connection just closes. */
    put_control_u32x2(s, SPDY_GOAWAY, s->last_stream, status);
}

bool spdy_closing(const spdy_session *s)
{
    return s->closing;
}

const char *spdy_error(const spdy_session *s)
{
    return s->error[0] ? s->error : NULL;
}

/* ---- header blocks ----------------------------------------------------- */

/* Inflate one header block into a buffer of at most max_header_block bytes.
 * Any failure breaks the shared context: the caller fails the session. */
static int inflate_block(spdy_session *s, const uint8_t *in, size_t in_len, vk_buf *out)
{
    z_stream *z = &s->inflater;
    if (!s->inflater_ready) {
        if (inflateInit(z) != Z_OK)
            return -1;
        s->inflater_ready = true;
    }
    z->next_in = (Bytef *)in;
    z->avail_in = (uInt)in_len;
    for (;;) {
        uint8_t chunk[4096];
        z->next_out = chunk;
        z->avail_out = sizeof chunk;
        int r = inflate(z, Z_SYNC_FLUSH);
        if (r == Z_NEED_DICT) {
            if (inflateSetDictionary(z, spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK)
                return -1;
            continue;
        }
        if (r != Z_OK && r != Z_BUF_ERROR)
            return -1; /* includes Z_STREAM_END: the context must stay open */
        size_t got = sizeof chunk - z->avail_out;
        if (out->len + got > s->lim.max_header_block)
            return -1;
        if (vk_buf_append(out, chunk, got) < 0)
            return -1;
        if (z->avail_out != 0) /* all input consumed, all output drained */
            break;
    }
    return z->avail_in == 0 ? 0 : -1;
}

/* Parse an inflated block into pairs whose strings live in *arena. Returns
 * the number of pairs, or -1 for a malformed block. */
static long parse_block(const uint8_t *p, size_t len, spdy_nv **out, char **arena)
{
    *out = NULL;
    *arena = NULL;
    if (len < 4)
        return -1;
    uint32_t count = get32(p);
    /* Each pair takes at least its two length fields. */
    if (count > (len - 4) / 8)
        return -1;
    spdy_nv *nv = calloc(count ? count : 1, sizeof *nv);
    /* Every name and value gets a NUL: the arena never exceeds the block
     * plus one byte per length field it replaces. */
    char *a = malloc(len + 1);
    if (!nv || !a)
        goto bad;
    size_t off = 4, aoff = 0;
    for (uint32_t i = 0; i < count; i++) {
        for (int part = 0; part < 2; part++) {
            if (len - off < 4)
                goto bad;
            uint32_t l = get32(p + off);
            off += 4;
            if (l > len - off || (part == 0 && l == 0))
                goto bad;
            char *dst = a + aoff;
            memcpy(dst, p + off, l);
            dst[l] = '\0';
            if (part == 0) {
                for (uint32_t j = 0; j < l; j++)
                    dst[j] = (char)tolower((unsigned char)dst[j]);
                nv[i].name = dst;
            } else {
                nv[i].value = dst;
                nv[i].value_len = l;
            }
            off += l;
            aoff += l + 1;
        }
    }
    if (off != len)
        goto bad;
    *out = nv;
    *arena = a;
    return (long)count;
bad:
    free(nv);
    free(a);
    return -1;
}

/* ---- control frames ---------------------------------------------------- */

static void on_syn_stream(spdy_session *s, const uint8_t *p, size_t len, uint8_t flags)
{
    vk_buf block = VK_BUF_INIT;
    spdy_nv *nv = NULL;
    char *arena = NULL;

    if (len < 10) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "SYN_STREAM of %zu bytes", len);
        return;
    }
    uint32_t id = get32(p) & 0x7fffffffu;
    if (inflate_block(s, p + 10, len - 10, &block) < 0) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "SYN_STREAM %u: bad header block", id);
        goto out;
    }
    if (id == 0 || id <= s->last_stream) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "SYN_STREAM id %u after %u", id, s->last_stream);
        goto out;
    }
    s->last_stream = id;
    if (ours(s, id)) {
        rst(s, id, SPDY_PROTOCOL_ERROR); /* the peer took one of our ids */
        goto out;
    }
    long count = parse_block((const uint8_t *)block.data, block.len, &nv, &arena);
    if (count < 0) {
        rst(s, id, SPDY_PROTOCOL_ERROR);
        goto out;
    }
    /* Kubernetes servers never open streams: a client refuses them. */
    if (s->client || s->goaway_received || s->nstreams >= s->lim.max_streams) {
        rst(s, id, SPDY_REFUSED_STREAM);
        goto out;
    }
    struct stream *st = add_stream(s, id);
    if (!st) {
        fail(s, SPDY_GOAWAY_INTERNAL_ERROR, "out of memory");
        goto out;
    }
    st->opening = true;
    /* A unidirectional stream is one the server may not send on. */
    st->local_fin = (flags & SPDY_FLAG_UNIDIRECTIONAL) != 0;
    spdy_headers h = {nv, (size_t)count};
    int refuse = s->cb.on_stream(s->user, id, &h);
    st = find_stream(s, id); /* the array may have moved */
    if (refuse) {
        remove_stream(s, id);
        rst(s, id, (uint32_t)refuse);
        goto out;
    }
    if (!st)
        goto out; /* the user reset it from the callback */
    st->opening = false;
    if (put_syn_reply(s, id) < 0)
        goto out;
    if (flags & SPDY_FLAG_FIN)
        remote_finished(s, id);
out:
    vk_buf_free(&block);
    free(nv);
    free(arena);
}

/* SYN_REPLY and HEADERS: the block is inflated to keep the context in step
 * and checked; its content means nothing to either side here. A SYN_REPLY
 * is only right once, for a stream we opened. */
static void on_other_headers(spdy_session *s, uint16_t type, const uint8_t *p, size_t len,
                             uint8_t flags)
{
    vk_buf block = VK_BUF_INIT;
    spdy_nv *nv = NULL;
    char *arena = NULL;

    if (len < 4) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "control frame %u of %zu bytes", type, len);
        return;
    }
    uint32_t id = get32(p) & 0x7fffffffu;
    if (inflate_block(s, p + 4, len - 4, &block) < 0) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "stream %u: bad header block", id);
        goto out;
    }
    struct stream *st = find_stream(s, id);
    if (!st) {
        if (!ever_opened(s, id))
            rst(s, id, SPDY_INVALID_STREAM);
        goto out;
    }
    if (type == SPDY_SYN_REPLY) {
        if (!ours(s, id) || st->replied) {
            reset_stream(s, id, SPDY_STREAM_IN_USE);
            goto out;
        }
        st->replied = true;
    }
    if (parse_block((const uint8_t *)block.data, block.len, &nv, &arena) < 0) {
        reset_stream(s, id, SPDY_PROTOCOL_ERROR);
        goto out;
    }
    if (flags & SPDY_FLAG_FIN)
        remote_finished(s, id);
out:
    vk_buf_free(&block);
    free(nv);
    free(arena);
}

static void on_control(spdy_session *s, uint16_t type, uint8_t flags, const uint8_t *p, size_t len)
{
    switch (type) {
    case SPDY_SYN_STREAM:
        on_syn_stream(s, p, len, flags);
        break;
    case SPDY_SYN_REPLY:
    case SPDY_HEADERS:
        on_other_headers(s, type, p, len, flags);
        break;
    case SPDY_RST_STREAM: {
        if (len != 8) {
            fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "RST_STREAM of %zu bytes", len);
            break;
        }
        uint32_t id = get32(p) & 0x7fffffffu, status = get32(p + 4);
        if (id == 0 || status == 0) {
            fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "RST_STREAM id %u status %u", id, status);
            break;
        }
        if (find_stream(s, id)) {
            remove_stream(s, id);
            if (s->cb.on_reset)
                s->cb.on_reset(s->user, id, status);
        }
        break;
    }
    case SPDY_SETTINGS:
        /* Nothing in SETTINGS changes what this server does; only the
         * framing is checked. */
        if (len < 4 || (len - 4) % 8 != 0 || get32(p) != (len - 4) / 8)
            fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "malformed SETTINGS");
        break;
    case SPDY_PING:
        if (len != 4) {
            fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "PING of %zu bytes", len);
            break;
        }
        /* Pings with the peer's parity are its own, to echo; ours would be
         * answers, and we send none. */
        if (!ours(s, get32(p)) && spdy_write_ping(s, get32(p)) < 0)
            fail(s, SPDY_GOAWAY_INTERNAL_ERROR, "out of memory");
        break;
    case SPDY_GOAWAY:
        if (len != 8) {
            fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "GOAWAY of %zu bytes", len);
            break;
        }
        s->goaway_received = true;
        if (s->cb.on_goaway)
            s->cb.on_goaway(s->user, get32(p + 4));
        break;
    case SPDY_WINDOW_UPDATE:
        /* Validated, then ignored: see the flow control note in spdy.h. */
        if (len != 8)
            fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "WINDOW_UPDATE of %zu bytes", len);
        break;
    default:
        break; /* not reached: unknown types are skipped unread */
    }
}

/* ---- parser ------------------------------------------------------------ */

static bool known_control(uint16_t type)
{
    return type == SPDY_SYN_STREAM || type == SPDY_SYN_REPLY || type == SPDY_RST_STREAM ||
           type == SPDY_SETTINGS || type == SPDY_PING || type == SPDY_GOAWAY ||
           type == SPDY_HEADERS || type == SPDY_WINDOW_UPDATE;
}

static void end_data(spdy_session *s)
{
    s->st = ST_HEAD;
    if (s->frame_flags & SPDY_FLAG_FIN)
        remote_finished(s, s->frame_stream);
}

static void begin_data(spdy_session *s, uint32_t id, size_t len)
{
    s->frame_stream = id;
    s->remaining = len;
    s->st = ST_SKIP;
    if (id == 0) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "DATA on stream 0");
        return;
    }
    struct stream *st = find_stream(s, id);
    if (!st) {
        /* Late frames on a stream already closed are dropped; a stream
         * that never existed is the peer's mistake. */
        if (!ever_opened(s, id))
            rst(s, id, SPDY_INVALID_STREAM);
        return;
    }
    if (st->remote_fin) {
        reset_stream(s, id, SPDY_STREAM_ALREADY_CLOSED);
        return;
    }
    if (len > s->lim.max_data) {
        reset_stream(s, id, SPDY_FRAME_TOO_LARGE);
        return;
    }
    s->st = ST_DATA;
    if (len == 0)
        end_data(s);
}

static void begin_frame(spdy_session *s)
{
    const uint8_t *h = s->head;
    s->head_len = 0;
    s->frame_flags = h[4];
    size_t len = get24(h + 5);

    if (!(h[0] & 0x80)) {
        begin_data(s, get32(h) & 0x7fffffffu, len);
        return;
    }
    uint16_t version = (uint16_t)(((h[0] & 0x7f) << 8) | h[1]);
    uint16_t type = (uint16_t)((h[2] << 8) | h[3]);
    if (version != SPDY_VERSION) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "SPDY version %u", version);
        return;
    }
    if (!known_control(type)) {
        /* SPDY/3: a control frame of unknown type is ignored. */
        s->st = ST_SKIP;
        s->remaining = len;
        return;
    }
    if (len > s->lim.max_control) {
        fail(s, SPDY_GOAWAY_PROTOCOL_ERROR, "control frame %u of %zu bytes", type, len);
        return;
    }
    s->frame_type = type;
    s->ctrl_need = len;
    s->ctrl_len = 0;
    if (len == 0) {
        on_control(s, type, s->frame_flags, NULL, 0);
        return;
    }
    s->ctrl = malloc(len);
    if (!s->ctrl) {
        fail(s, SPDY_GOAWAY_INTERNAL_ERROR, "out of memory");
        return;
    }
    s->st = ST_CONTROL;
}

bool spdy_wants_input(const spdy_session *s)
{
    return s->closing || (!s->paused && pending(s) < s->lim.out_high_water);
}

size_t spdy_feed(spdy_session *s, const uint8_t *data, size_t len)
{
    size_t used = 0;
    while (used < len && !s->closing && spdy_wants_input(s)) {
        const uint8_t *p = data + used;
        size_t avail = len - used, n;
        switch (s->st) {
        case ST_HEAD:
            n = avail < FRAME_HEADER - s->head_len ? avail : FRAME_HEADER - s->head_len;
            memcpy(s->head + s->head_len, p, n);
            s->head_len += n;
            used += n;
            if (s->head_len == FRAME_HEADER)
                begin_frame(s);
            break;
        case ST_DATA:
            n = avail < s->remaining ? avail : s->remaining;
            used += n;
            s->remaining -= n;
            /* The user may have reset the stream in an earlier piece. */
            if (find_stream(s, s->frame_stream))
                s->cb.on_data(s->user, s->frame_stream, p, n);
            if (s->remaining == 0)
                end_data(s);
            break;
        case ST_CONTROL:
            n = avail < s->ctrl_need - s->ctrl_len ? avail : s->ctrl_need - s->ctrl_len;
            memcpy(s->ctrl + s->ctrl_len, p, n);
            s->ctrl_len += n;
            used += n;
            if (s->ctrl_len == s->ctrl_need) {
                uint8_t *payload = s->ctrl;
                s->ctrl = NULL;
                s->st = ST_HEAD;
                on_control(s, s->frame_type, s->frame_flags, payload, s->ctrl_need);
                free(payload);
            }
            break;
        case ST_SKIP:
            n = avail < s->remaining ? avail : s->remaining;
            used += n;
            s->remaining -= n;
            if (s->remaining == 0)
                s->st = ST_HEAD;
            break;
        }
    }
    return s->closing ? len : used;
}

void spdy_pause_input(spdy_session *s, bool paused)
{
    s->paused = paused;
}

/* ---- sending ----------------------------------------------------------- */

size_t spdy_output(const spdy_session *s, const uint8_t **data)
{
    /* Nothing queued yet: out.data is NULL, and NULL + 0 is undefined. */
    *data = s->out.data ? (const uint8_t *)s->out.data + s->out_off : NULL;
    return pending(s);
}

bool spdy_output_sent(spdy_session *s, size_t n)
{
    if (n > pending(s))
        n = pending(s);
    s->out_off += n;
    if (s->out_off == s->out.len) {
        vk_buf_reset(&s->out);
        s->out_off = 0;
    } else if (s->out_off >= COMPACT_AT && s->out_off * 2 >= s->out.len) {
        memmove(s->out.data, s->out.data + s->out_off, pending(s));
        s->out.len -= s->out_off;
        s->out_off = 0;
    }
    if (s->out_full && pending(s) < s->lim.out_high_water / 2) {
        s->out_full = false;
        return true;
    }
    return false;
}

bool spdy_writable(const spdy_session *s)
{
    return pending(s) < s->lim.out_high_water;
}

int spdy_data(spdy_session *s, uint32_t id, const void *data, size_t len, bool fin)
{
    struct stream *st = find_stream(s, id);
    if (!st || st->local_fin || st->opening || s->closing)
        return -1;
    const uint8_t *p = data;
    do {
        size_t n = len < DATA_CHUNK ? len : DATA_CHUNK;
        uint8_t flags = (fin && n == len) ? SPDY_FLAG_FIN : 0;
        if (put_data(s, id, flags, p, n) < 0) {
            fail(s, SPDY_GOAWAY_INTERNAL_ERROR, "out of memory");
            return -1;
        }
        if (n) /* a bare FIN comes with data NULL: NULL + 0 is undefined */
            p += n;
        len -= n;
    } while (len > 0);
    if (fin) {
        st->local_fin = true;
        remove_if_done(s, st);
    }
    return 0;
}

void spdy_rst(spdy_session *s, uint32_t id, enum spdy_rst_status status)
{
    if (!find_stream(s, id))
        return;
    remove_stream(s, id);
    if (!s->closing)
        rst(s, id, status);
}

/* ---- life cycle -------------------------------------------------------- */

static spdy_session *session_new(const spdy_callbacks *cb, void *user, const spdy_limits *lim,
                                 bool client)
{
    spdy_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cb = *cb;
    s->user = user;
    if (lim)
        s->lim = *lim;
    else
        spdy_limits_default(&s->lim);
    s->client = client;
    s->next_id = client ? 1 : 0;
    return s;
}

spdy_session *spdy_session_new(const spdy_callbacks *cb, void *user, const spdy_limits *lim)
{
    return session_new(cb, user, lim, false);
}

spdy_session *spdy_client_new(const spdy_callbacks *cb, void *user, const spdy_limits *lim)
{
    return session_new(cb, user, lim, true);
}

uint32_t spdy_open(spdy_session *s, const spdy_nv *nv, size_t count, bool fin)
{
    if (!s->client || s->closing || s->goaway_received || s->next_id > 0x7fffffffu ||
        s->nstreams >= s->lim.max_streams)
        return 0;
    uint32_t id = s->next_id;
    struct stream *st = add_stream(s, id);
    if (!st)
        return 0;
    if (spdy_write_syn_stream(s, id, fin ? SPDY_FLAG_FIN : 0, nv, count) < 0) {
        remove_stream(s, id);
        return 0;
    }
    s->next_id += 2;
    st->local_fin = fin;
    return id;
}

void spdy_session_free(spdy_session *s)
{
    if (!s)
        return;
    if (s->inflater_ready)
        inflateEnd(&s->inflater);
    if (s->deflater_ready)
        deflateEnd(&s->deflater);
    free(s->ctrl);
    free(s->streams);
    vk_buf_free(&s->out);
    free(s);
}
