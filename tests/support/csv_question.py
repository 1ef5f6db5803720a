"""The CSV question every chat front-end's test asks through the LLM agent: a sales file, the
analysis the stand-in LLM has the agent run, and its answer once the output shows the total."""

from __future__ import annotations

from tests.support.fake_openai import FakeOpenAI, Text, run_python

SALES_CSV = b"month,amount\njan,120.5\nfeb,80.25\nmar,99.25\n"
QUESTION = "What is the total amount in sales.csv? Plot it by month."
OUTPUT = "total amount: 300.0"
ANSWER = "The total amount is 300.0; the chart shows it by month."
ANALYSIS = (
    "import pandas as pd\nimport matplotlib.pyplot as plt\ndf = pd.read_csv('sales.csv')\n"
    "print('total amount:', df['amount'].sum())\ndf.plot(x='month', y='amount')\nplt.show()\n"
)


def script(llm: FakeOpenAI) -> dict[str, str]:
    """Teach ``llm`` the two steps; returns the settings that make the agent use it."""
    llm.add(run_python(ANALYSIS, when="total"), Text(ANSWER, when=OUTPUT))
    return {"agent": "builtin", "llm_base_url": llm.base_url, "llm_api_key": "test"}
