"""A reader of TensorBoard event files written from the format's public description (TFRecord
framing with masked CRC-32C; Event, Summary and Summary.Value decoded from the protobuf wire
format by hand), independent of rondo's writer."""
import struct


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def fields(buf):
    """Protobuf wire format: [(field number, wire type, value)]."""
    out, i = [], 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 2:
            n, i = varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire}")
        out.append((number, wire, value))
    return out


def events(path):
    """[(wall_time, step, file_version, {tag: value})], every record's checksums verified."""
    data, i, out, bad = open(path, "rb").read(), 0, [], 0
    while i < len(data):
        header = data[i:i + 8]
        length = struct.unpack("<Q", header)[0]
        bad += struct.unpack("<I", data[i + 8:i + 12])[0] != masked(crc32c(header))
        body = data[i + 12:i + 12 + length]
        bad += struct.unpack("<I", data[i + 12 + length:i + 16 + length])[0] != masked(crc32c(body))
        i += 16 + length
        wall, step, version, scalars = 0.0, 0, None, {}
        for number, _, value in fields(body):
            if number == 1:
                wall = struct.unpack("<d", value)[0]
            elif number == 2:
                step = value
            elif number == 3:
                version = value.decode()
            elif number == 5:
                for n, _, v in fields(value):
                    if n == 1:
                        tag = val = None
                        for vn, _, vv in fields(v):
                            if vn == 1:
                                tag = vv.decode()
                            elif vn == 2:
                                val = struct.unpack("<f", vv)[0]
                        scalars[tag] = val
        out.append((wall, step, version, scalars))
    return out, bad
