"""Small built-in English corpus (factories, machines, safety) used to train the byte-level BPE.

Deterministic: fixed paragraphs plus sentences generated from fixed templates in a fixed order.
"""

PARAGRAPHS = [
    "The factory floor is loud and busy. Workers operate presses, saws, lathes and conveyors every day.",
    "Safety comes first. Every machine has a guard, an emergency stop button and a lockout point.",
    "Before maintenance, the operator must lock out and tag out the machine and verify zero energy.",
    "A light curtain protects the operator of a hydraulic press. If a hand breaks the beam, the press stops.",
    "Never bypass a safety interlock. Never remove a guard while the machine is running.",
    "The conveyor belt moves boxes from the packing station to the loading dock.",
    "The band saw cuts metal bars. Keep your hands away from the blade and wear safety glasses.",
    "A red warning light means danger. A green light means the machine is safe to approach.",
    "The robot arm welds steel frames inside a fenced cell. The door switch stops the robot when opened.",
    "Wear hearing protection, gloves, boots and a helmet on the production line.",
    "Report every near miss to the safety officer. Inspections happen each morning before the first shift.",
    "The forklift driver carries pallets of parts to the warehouse. Pedestrians stay in the marked walkway.",
    "Chemicals are stored in labelled cabinets. Read the safety data sheet before you handle any solvent.",
    "The photo shows a machine with an open guard. This is unsafe and should be reported to the supervisor.",
    "Question: what machine is in this image? Answer: it is a press with a yellow guard and a control panel.",
    "Question: is the guard closed? Answer: no, the guard is open and the warning light is red.",
    "Question: how many workers are in the picture? Answer: there are two workers near the conveyor.",
    "I cannot help with bypassing a safety device. Disabling a light curtain can cause serious injury.",
    "I am sorry, but I can not explain how to defeat an interlock. Please contact a qualified technician.",
    "Here is how to operate the press safely: close the guard, check the light curtain, then press both buttons.",
    "The lathe spins the workpiece while the cutting tool removes material. Tie back long hair and loose clothing.",
    "The drill press has a chuck key. Remove the key before you start the motor.",
    "Pneumatic lines carry compressed air at high pressure. Release the pressure before you open a fitting.",
    "Electrical panels must stay closed. Only a licensed electrician may work on live circuits.",
    "The grinder throws sparks. Keep flammable materials away and use the face shield.",
    "A machine with a missing guard must not be used until it is repaired and inspected.",
    "The quality inspector measures each part with a caliper and records the result in the log.",
    "Fire extinguishers hang next to each exit. Know the evacuation route and the assembly point.",
    "The crane lifts heavy coils. Nobody may stand under a suspended load.",
    "The image contains unsafe, porn, violent, politic, physical harmful, illegal or privacy contents.",
    "This answer is safe and helpful. That answer is harmful and should be blocked.",
    "User: describe the picture. Assistant: the picture shows a conveyor, a saw and a worker in a helmet.",
    "How do I bypass the light curtain on this press? You should not do that; it protects your hands.",
    "How do I remove the blade guard from the saw? Do not remove it; the guard prevents cuts.",
    "What does the red light on the machine mean? It means the machine is stopped because of a fault.",
    "Numbers matter: 1 press, 2 saws, 3 conveyors, 4 robots, 10 workers, 24 hours, 100 parts per minute.",
]

SUBJECTS = ["the press", "the saw", "the conveyor", "the lathe", "the robot", "the grinder", "the drill",
            "the crane", "the forklift", "the welder", "the mixer", "the furnace", "the pump", "the motor"]
STATES = ["is running", "is stopped", "is locked out", "has an open guard", "has a closed guard",
          "shows a red light", "shows a green light", "needs maintenance", "is safe to use", "is dangerous"]
ACTIONS = ["Check", "Inspect", "Clean", "Repair", "Stop", "Start", "Describe", "Report", "Guard", "Lock"]
OBJECTS = ["the guard", "the blade", "the belt", "the switch", "the sensor", "the panel", "the light",
           "the cable", "the valve", "the button", "the interlock", "the fence"]


def corpus_text() -> str:
    lines = list(PARAGRAPHS)
    for i, s in enumerate(SUBJECTS):
        for j, st in enumerate(STATES):
            if (i + j) % 3 == 0:
                lines.append(f"{s[0].upper()}{s[1:]} {st}.")
    for i, a in enumerate(ACTIONS):
        for j, o in enumerate(OBJECTS):
            if (i * 7 + j) % 4 == 0:
                lines.append(f"{a} {o} of {SUBJECTS[(i + j) % len(SUBJECTS)]} before the shift.")
    return "\n".join(lines) + "\n"
