from drivers.ssd1306 import SSD1306


class FakeI2C:
    def __init__(self):
        self.commands = []
        self.data = []

    def writeto(self, addr, buf):
        if addr != 0x3C or buf[0] != 0x80:
            raise ValueError("command writes start with control byte 0x80")
        self.commands.append(buf[1])

    def writevto(self, addr, bufs):
        if bytes(bufs[0]) != b"\x40":
            raise ValueError("data writes start with control byte 0x40")
        self.data.append(bytes(bufs[1]))


def test_init_turns_panel_on_with_charge_pump():
    i2c = FakeI2C()
    SSD1306(i2c)
    cmds = i2c.commands
    assert cmds[0] == 0xAE  # off while configuring
    pump = cmds.index(0x8D)
    assert cmds[pump + 1] == 0x14
    assert 0xAF in cmds[pump:]  # on after the charge pump
    assert cmds[cmds.index(0xA8) + 1] == 63  # 64 rows


def test_show_sends_whole_window_then_buffer():
    i2c = FakeI2C()
    oled = SSD1306(i2c)
    i2c.commands.clear()
    oled.pixel(0, 0, 1)
    oled.pixel(127, 63, 1)
    oled.show()
    assert i2c.commands == [0x21, 0, 127, 0x22, 0, 7]
    frame = i2c.data[-1]
    assert len(frame) == 1024
    assert frame[0] == 0x01  # MONO_VLSB: pixel (0,0) is bit 0 of byte 0
    assert frame[1023] == 0x80  # pixel (127,63): last page, bit 7


def test_power_off_and_on():
    i2c = FakeI2C()
    oled = SSD1306(i2c)
    oled.power(False)
    assert i2c.commands[-1] == 0xAE and not oled.on
    oled.power(True)
    assert i2c.commands[-1] == 0xAF and oled.on
